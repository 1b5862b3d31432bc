"""Pure numpy windowing and statistics: per (patient, metric, window) summaries and time in range."""
