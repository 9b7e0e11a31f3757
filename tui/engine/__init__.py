"""The engine: every child process of the project, driven without any UI."""
