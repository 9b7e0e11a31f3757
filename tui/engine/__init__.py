"""The engine: everything that runs and watches the processes, with no screen (no Textual)."""
