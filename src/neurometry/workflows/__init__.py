"""Store-in, store-out pipelines, one module per verb: what a command does, minus parsing and printing.
The CLI, the demo, the report and the dashboard call these."""
