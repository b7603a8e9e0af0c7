"""Batch work off the request path: file storage, batch validation, the batch job and its runners."""
