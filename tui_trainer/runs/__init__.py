"""A run as something hosted, whatever starts it (the headless command, the app, a detached run, a torchrun
rank): what to train (request), how it is hosted (hosting), and the one host that builds it (host).

The engine never imports this package; the faces (cli, headless, ui) and the detached launcher do.
"""
