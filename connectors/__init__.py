"""Sources and sinks: everything that talks to the outside world (files, Redis, FHIR servers, Google)."""
