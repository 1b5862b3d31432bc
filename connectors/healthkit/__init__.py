"""Apple HealthKit sources: the ``export.zip`` / ``export.xml`` an iPhone writes."""
