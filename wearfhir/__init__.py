"""wearfhir: wearable data (Apple HealthKit, Google Fit) to clinical-grade FHIR R4."""

__version__ = "0.1.0"
