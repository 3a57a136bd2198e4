"""The CLI's commands, one module per command group, each imported only when run."""
