"""S3 (or MinIO, R2 ... through `endpoint_url`) file content storage, streamed both ways with boto3."""
import logging

import boto3
from botocore.config import Config

from deltallm.jobs.storage import CHUNK_SIZE

logger = logging.getLogger(__name__)
# S3 multipart parts must be at least 5 MiB (but the last): content is sent in parts of this size
PART_SIZE = 8 * 1024 * 1024


class S3Storage:
    """Objects `<prefix>/<file id>` in one bucket; a file larger than one part is a multipart upload."""

    name = "s3"

    def __init__(self, bucket, prefix="", endpoint_url=None, region_name=None, aws_access_key_id=None,
                 aws_secret_access_key=None):
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix and prefix.strip("/") else ""
        # boto3 clients are thread-safe; credentials not given here come from the standard AWS chain
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region_name, aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60))

    def object_key(self, key):
        return self.prefix + key

    def write(self, key, chunks):
        target = self.object_key(key)
        buffer = bytearray()
        upload = None
        parts = []
        try:
            for data in chunks:
                buffer += data
                if len(buffer) >= PART_SIZE:
                    if upload is None:
                        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=target)["UploadId"]
                    parts.append(self._part(target, upload, len(parts) + 1, bytes(buffer[:PART_SIZE])))
                    del buffer[:PART_SIZE]
            if upload is None:
                self.client.put_object(Bucket=self.bucket, Key=target, Body=bytes(buffer))
                return
            if buffer:
                parts.append(self._part(target, upload, len(parts) + 1, bytes(buffer)))
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=target, UploadId=upload,
                                                  MultipartUpload={"Parts": parts})
        except BaseException:
            if upload is not None:
                self._abort(target, upload)
            raise

    def _part(self, target, upload, number, body):
        answer = self.client.upload_part(Bucket=self.bucket, Key=target, UploadId=upload, PartNumber=number,
                                         Body=body)
        return {"ETag": answer["ETag"], "PartNumber": number}

    def _abort(self, target, upload):
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=target, UploadId=upload)
        except Exception:  # noqa: BLE001 - the original failure matters more; S3 expires stale uploads by rule
            logger.warning("could not abort the multipart upload of %s", target, exc_info=True)

    def read(self, key):
        body = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"]
        try:
            yield from body.iter_chunks(CHUNK_SIZE)
        finally:
            body.close()

    def delete(self, key):
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
