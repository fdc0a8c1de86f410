#!/usr/bin/env python3
"""A small Magdi client using only Python's standard library.

It walks the main job end to end: sign up, sign in, upload a project to
MagdiCreator, ask for tests, download the ZIP, unpack it and run the tests
with pytest. Usage: python3 examples/client.py [BASE_URL] [PROJECT_DIR]
"""

import io
import json
import pathlib
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import zipfile


class Magdi:
    def __init__(self, base):
        self.base = base.rstrip("/")
        self.token = None

    def _request(self, method, path, body=None, content_type=None):
        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        with urllib.request.urlopen(request) as response:
            return response.read()

    def json(self, method, path, payload=None):
        body = json.dumps(payload).encode() if payload is not None else None
        return json.loads(self._request(method, path, body, "application/json" if body else None))

    def form(self, path, fields, files=()):
        boundary = uuid.uuid4().hex
        out = io.BytesIO()
        for name, value in fields.items():
            out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        for name, data in files:
            out.write(
                f'--{boundary}\r\nContent-Disposition: form-data; name="files[]"; filename="{name}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n".encode()
            )
            out.write(data + b"\r\n")
        out.write(f"--{boundary}--\r\n".encode())
        raw = self._request("POST", path, out.getvalue(), f"multipart/form-data; boundary={boundary}")
        return json.loads(raw)


def zip_dir(folder):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(folder))
    return buffer.getvalue()


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:5000"
    project = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else pathlib.Path(__file__).parent.parent / "tests/fixtures/shop")
    magdi = Magdi(base)
    email, password = f"client-{int(time.time())}@example.com", "client password"
    magdi.json("POST", "/register", {"email": email, "password": password, "confirmPassword": password})
    magdi.token = magdi.json("POST", "/login", {"email": email, "password": password})["token"]

    conversation = magdi.json("POST", "/start_conversation", {"category": "test_generation"})["conversation_id"]
    uploaded = magdi.form("/conversation/upload", {"conversation_id": conversation}, [("project.zip", zip_dir(project))])
    print(f"uploaded {uploaded['workspace_files']} files")

    answer = magdi.form(
        "/chat",
        {"conversation_id": conversation, "category": "test_generation", "message": "Write pytest tests."},
    )
    print(answer["reply"][:2000])
    artifact = answer["artifact"]
    if not artifact:
        print("the agent wrote no files")
        return 1

    data = magdi._request("GET", artifact["download_url"])
    checkout = pathlib.Path(tempfile.mkdtemp())
    zipfile.ZipFile(io.BytesIO(data)).extractall(checkout)
    print(f"unpacked {len(data)} bytes into {checkout}; running pytest")
    return subprocess.call([sys.executable, "-m", "pytest", "-q"], cwd=checkout)


if __name__ == "__main__":
    sys.exit(main())
