"""Google Fit sources: the shared point parser and Google Takeout "Fit" exports."""
