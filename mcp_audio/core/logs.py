"""The server log as one JSON object a line (`MCP_AUDIO_LOG_FORMAT=json`), for log pipelines:
`ts`, `level`, `logger`, `message`, and the job and W3C trace the line is about when known (a
job's follower and the call that starts it set them: core/trace.py)."""

from __future__ import annotations

import json
import logging
import time

from mcp_audio.core.trace import current_job

__all__ = ["JsonFormatter"]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job = current_job.get()
        if job.job_id is not None:
            line["job_id"] = job.job_id
        if job.traceparent is not None:
            line["traceparent"] = job.traceparent
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)
