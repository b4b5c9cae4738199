"""The gateway's domain: requests, catalog, validation, pricing and the edit service. No I/O here."""
