"""What runs: one module per kind of process. Never imports the console (tui) or any UI library."""
