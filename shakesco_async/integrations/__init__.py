"""Framework glue. Each module imports its framework; the core never imports these."""
