"""Helpers the batch tests share: JSONL lines, uploads through the Files API, polling a batch."""
import io
import time

import orjson


def line(custom_id, body, url="/v1/chat/completions", method="POST"):
    return orjson.dumps({"custom_id": custom_id, "method": method, "url": url, "body": body})


def chat_line(custom_id, text="hi", model="mocky"):
    return line(custom_id, {"model": model, "messages": [{"role": "user", "content": text}]})


def embedding_line(custom_id, text="hi", model="mocky"):
    return line(custom_id, {"model": model, "input": text}, url="/v1/embeddings")


def jsonl(lines):
    return b"".join(item + b"\n" for item in lines)


def upload(client, headers, content, purpose="batch", name="input.jsonl"):
    answer = client.post("/v1/files", headers=headers, content_type="multipart/form-data",
                         data={"purpose": purpose, "file": (io.BytesIO(content), name)})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["id"]


def create(client, headers, file_id, endpoint="/v1/chat/completions", **extra):
    answer = client.post("/v1/batches", headers=headers,
                         json={"input_file_id": file_id, "endpoint": endpoint, **extra})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def wait_for(client, headers, batch_id, states=("completed", "failed", "cancelled", "expired"), timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.get(f"/v1/batches/{batch_id}", headers=headers).get_json()
        if batch["status"] in states:
            return batch
        time.sleep(0.05)
    raise AssertionError(f"batch {batch_id} still {batch['status']} after {timeout} s: {batch}")


def content_lines(client, headers, file_id):
    if file_id is None:
        return []
    answer = client.get(f"/v1/files/{file_id}/content", headers=headers)
    assert answer.status_code == 200
    return [orjson.loads(raw) for raw in answer.data.splitlines()]
