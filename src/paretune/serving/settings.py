"""Every knob of `paretune serve`, validated once: the CLI builds this, the app only reads it.

Each field is also a `paretune serve` option (cli/settings_options.py): its description is the
flag's help, `json_schema_extra` names a flag that differs from the field."""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from paretune.errors import ParetuneError
from paretune.remote_code import FLAG_HELP


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="Address to bind. Loopback by default; others need API keys.")
    port: int = Field(8000, ge=1, le=65535, description="Port to listen on.")
    workers: int = Field(1, ge=1, description="Server processes, each loading its own copy of the model.")
    device: str | None = Field(None, description="torch device (default: cuda if available, else cpu).")
    trust_remote_code: bool = Field(False, description=FLAG_HELP)

    # Where the model runs (serving/model_pool.py, serving/onnx_engine.py).
    model_processes: int | None = Field(None, ge=0, description=(
        "Processes running the model, fed by the HTTP process; 0: a thread of the HTTP process. "
        "Default: one per CPU core on a CPU, 0 on a GPU."))
    model_threads: int = Field(1, ge=1, description="Threads of each model process (torch / ONNX Runtime).")
    model_nice: int = Field(5, ge=0, le=19, description=(
        "How much lower the model processes' CPU priority is than the HTTP process's (Unix nice). "
        "When the cores are short, the event loop that reads requests and writes answers (and "
        "whatever else runs on the machine) goes first; an idle machine runs the model at full speed."))
    engine: Literal["auto", "torch", "onnxruntime"] = Field("auto", description=(
        "auto: ONNX Runtime on a CPU when the run is (or exports cleanly to) ONNX, else torch."))

    # Micro-batching: texts from concurrent requests share one forward pass.
    max_batch_size: int = Field(32, ge=1, description="Most texts per forward pass; 1 turns micro-batching off.")
    max_wait_ms: float = Field(5.0, ge=0, description="How long a batch waits for more requests to join.")
    max_queue: int = Field(1024, ge=1, description="Texts waiting for the model before requests get 503.")

    # Request limits.
    max_texts: int = Field(64, ge=1, description="Most texts in one request (422 above).")
    max_chars: int = Field(10_000, ge=1, description="Most characters in one text (422 above).")
    max_body_bytes: int = Field(1 << 20, ge=64, description="Largest request body in bytes (413 above).")
    max_new_tokens: int = Field(512, ge=1, description=(
        "Generative runs: most tokens one answer may generate (a request asking for more gets 400)."))
    max_image_pixels: int = Field(16_000_000, ge=1, description="Most pixels in one served image (422 above).")
    # Off by default: what protects the server from overload is the queue bound (503), which knows
    # its capacity; a per-key rate cannot, and 100/s throttled a single backend key under modest
    # load. Set it to share one server fairly among several callers.
    rate_limit: float = Field(0.0, ge=0, description="Requests per second per API key (429 above); 0 (default): off.")
    rate_burst: int | None = Field(None, ge=1, description="Requests one key may send at once (2x rate).")
    request_timeout_s: float = Field(30.0, gt=0, description="Seconds before a prediction gets 504.",
                                     json_schema_extra={"flag": "timeout"})
    max_connections: int = Field(512, ge=1, description=(
        "Requests handled at once before new ones get 503 (/healthz and /readyz are still answered)."))
    read_timeout_s: float = Field(15.0, gt=0, description=(
        "Seconds a client has to send a request's headers and body (408, connection closed, after)."),
        json_schema_extra={"flag": "read-timeout"})
    max_auth_failures: int = Field(20, ge=0, description=(
        "Failed API key attempts per client address per minute before 429; 0: off."))

    # Access control: SHA-256 digests only; plain keys never leave auth.load_api_keys.
    api_key_hashes: tuple[str, ...] = Field((), json_schema_extra={"cli": False})  # from --api-key-file
    allow_no_auth: bool = Field(False, description="Serve a non-loopback address without API keys.")

    # Logging and TLS.
    log_inputs: bool = Field(False, description="Log request texts (masked, cut to 200 characters).")
    mask_inputs: bool = Field(True, description="Mask emails, phone numbers and IDs in logged texts.")
    ssl_certfile: Path | None = Field(None, description="TLS certificate (PEM); needs --ssl-keyfile.")
    ssl_keyfile: Path | None = Field(None, description="TLS private key (PEM).")

    @property
    def burst(self) -> int:
        return self.rate_burst or max(1, round(2 * self.rate_limit))

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @model_validator(mode="after")
    def _check(self) -> "ServeSettings":
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ParetuneError("TLS needs both --ssl-certfile and --ssl-keyfile")
        for name in ("ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ParetuneError(f"--{name.replace('_', '-')} {path}: file not found")
        if not self.api_key_hashes and not self.loopback and not self.allow_no_auth:
            raise ParetuneError(
                f"refusing to serve {self.host} without API keys: anyone who can reach it could use the "
                "model. Give keys with --api-key-file PATH or PARETUNE_API_KEYS, bind --host 127.0.0.1, "
                "or pass --allow-no-auth if something in front of the server already checks callers"
            )
        return self


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False
