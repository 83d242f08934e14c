"""Upload to the cloud: the upload policy (pure), HTTP and TLS, the uploader and its ledger."""
