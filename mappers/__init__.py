"""Pure mapping layer: the canonical sample, the mapping tables and the FHIR resource builders."""
