"""Worker side: a logging handler that forwards a worker's records to the
caller's main interpreter, where its logging configuration (levels,
handlers, formatters) handles them (interpool._forwarding).

Imported only once a task imports ``logging`` (interpool._worker_output
watches for that), so workers that never log never load logging.
"""

import logging

_PLAIN = (str, int, float, bool, type(None))


class ForwardingHandler(logging.Handler):
    """Sends each record as a dict of its fields; the message is formatted
    here (its arguments may not travel) and so is its traceback."""

    def __init__(self, send, worker_name: str) -> None:
        super().__init__()
        self._send = send
        self._worker = worker_name

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {}
            for key, value in record.__dict__.items():
                fields[key] = value if isinstance(value, _PLAIN) else repr(value)
            fields["msg"] = record.getMessage()
            fields["args"] = None
            if record.exc_info:
                if not record.exc_text:
                    record.exc_text = _formatter.formatException(record.exc_info)
                fields["exc_text"] = record.exc_text
            fields["exc_info"] = None
            fields["threadName"] = self._worker or fields.get("threadName")
            fields["interpool_worker"] = self._worker
            self._send(("log", fields))
        except Exception:
            self.handleError(record)


_formatter = logging.Formatter()
_handler: ForwardingHandler | None = None


def install(send, worker_name: str) -> None:
    """Forward every record that reaches this worker's root logger, through
    send(item); the caller's configuration decides what is kept (the
    worker's root level is opened up: its own default, WARNING, would drop
    INFO records)."""
    global _handler
    if _handler is not None:
        return
    _handler = ForwardingHandler(send, worker_name)
    root = logging.getLogger()
    root.addHandler(_handler)
    root.setLevel(logging.NOTSET)
