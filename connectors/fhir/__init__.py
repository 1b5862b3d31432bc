"""Writing to FHIR servers: client, auth, dead letters, the Bytewax sink."""
