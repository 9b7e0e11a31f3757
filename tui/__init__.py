"""prodserver-tui: a terminal console that runs and watches every PRODUCTION_PROCESSES entry."""
