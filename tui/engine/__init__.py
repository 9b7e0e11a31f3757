"""The engine: runs every entry's processes, keeps their output, serves every client. No UI.

Clients (the console, an attached console, headless, the control commands) see it only
through ``tui.engine.api.Engine``: views of each process and output by sequence number,
and actions. This package imports no Textual.
"""
