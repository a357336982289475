"""The command-line programs: the top layer, the only one that parses arguments and prints for users.

- ``cli.sweep``: ``python -m bench.memory`` / ``python -m bench.throughput`` (a suite's sweep of cells)
- ``cli.scaling``: ``python -m bench.scaling`` (doubling lengths until each model fails)
- ``cli.rouge``: ``python -m bench.rouge`` (same-budget fine-tuning and ROUGE across lengths)
- ``cli.report``: ``python -m reports build`` (the report of run directories)

``cli.args`` holds what they share: the one argument parser (bad input ends as one ``error:`` line
and exit status 2), the one length grammar, device and thread defaults. Layers: cli -> suites ->
bench -> records <- reports, with models beside them; nothing below imports ``cli``.
"""
