"""The console's widgets: a pane per process, its log view, the compact list, dialogs."""
