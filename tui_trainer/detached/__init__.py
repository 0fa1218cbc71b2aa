"""Detached runs: training in its own process that outlives the terminal, with a control socket."""
