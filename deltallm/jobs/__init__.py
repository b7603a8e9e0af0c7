"""Background work and what it needs: batch validation and jobs, the in-process runner, file storage."""
