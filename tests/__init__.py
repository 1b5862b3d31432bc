"""wearfhir test suite."""
