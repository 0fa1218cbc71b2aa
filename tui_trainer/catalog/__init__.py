"""What a user can pick: datasets, models, losses and optimizers, by name.

The specs here are plain metadata (names, tasks, option schemas) so that a preset is validated without
importing torch; each spec's builder imports torch when it runs.
"""
