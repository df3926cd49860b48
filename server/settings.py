"""All settings of the server, read from the environment and `.env` files: the store's, plus those
of the HTTP transport and of `session-memory-mcp hook`."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from memory import ConfigurationError, InvalidSessionIdError, StoreConfig, check_session_id

MIN_TOKEN_CHARS = 16
Isolation = Literal["shared", "per-client"]
# Who saves the conversation: the model, through the tools, or the host's hooks
# (`session-memory-mcp hook`), which the model must then leave alone or each turn is stored twice.
Capture = Literal["model", "hooks"]


class Settings(BaseSettings, StoreConfig):
    """Read from the environment and `.env`; see `.env.example` for each one.

    The store's fields, defaults and checks are `StoreConfig`'s; `store_config()` hands the
    store only those.
    """

    # Empty values count as unset, so a copied .env.example selects the default store; other
    # variables of the environment are not ours. Read once at startup, never changed after.
    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore", frozen=True)

    mcp_auth_token: SecretStr | None = None
    mcp_tokens_file: Path | None = None
    mcp_jwt_jwks_url: str | None = None
    mcp_jwt_issuer: str | None = None
    mcp_jwt_audience: str | None = None
    mcp_jwt_required_scopes: Annotated[list[str], NoDecode] = Field(default_factory=list)
    mcp_public_url: str | None = None
    session_isolation: Isolation = "shared"
    mcp_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    mcp_allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # How long a connection may take to deliver a whole request over HTTP.
    mcp_request_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    capture: Capture = "model"
    # `session-memory-mcp hook` runs on every prompt and reply of its host, which waits for it:
    # its whole run, the store's deadline included, is held to this, whatever STORE_TIMEOUT_SECONDS says.
    hook_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    hook_session_id: str | None = None

    @field_validator("hook_session_id")
    @classmethod
    def _valid_session_id(cls, session_id: str | None) -> str | None:
        if session_id is None:
            return None
        try:
            return check_session_id(session_id)
        except InvalidSessionIdError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("mcp_auth_token")
    @classmethod
    def _long_enough(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and len(token.get_secret_value()) < MIN_TOKEN_CHARS:
            raise ValueError(f"must be at least {MIN_TOKEN_CHARS} characters")
        return token

    @field_validator("mcp_allowed_hosts", "mcp_allowed_origins", "mcp_jwt_required_scopes", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("mcp_jwt_jwks_url")
    @classmethod
    def _https_unless_loopback(cls, url: str | None) -> str | None:
        # Keys fetched over plain HTTP could be swapped on the way; loopback is the one exception.
        if url is not None and not _is_https_or_loopback(url):
            raise ValueError("must be an https:// URL (http:// only for a loopback address)")
        return url

    # Named apart from StoreConfig's validators: a subclass's validator of the same name
    # replaces the parent's, which would silently drop UPSTASH_REDIS_REST_URL's check.
    @field_validator("mcp_jwt_issuer", "mcp_public_url")
    @classmethod
    def _http_url_for_clients(cls, url: str | None) -> str | None:
        if url is not None and not _is_http_url(url):
            raise ValueError("must be an http(s) URL")
        return url

    @model_validator(mode="after")
    def _one_consistent_auth_mode(self) -> Settings:
        jwt = {
            "MCP_JWT_JWKS_URL": self.mcp_jwt_jwks_url,
            "MCP_JWT_ISSUER": self.mcp_jwt_issuer,
            "MCP_JWT_AUDIENCE": self.mcp_jwt_audience,
        }
        if any(jwt.values()) and not all(jwt.values()):
            missing = ", ".join(name for name, value in jwt.items() if not value)
            raise ConfigurationError(
                f"the JWT mode needs all of MCP_JWT_JWKS_URL, MCP_JWT_ISSUER and "
                f"MCP_JWT_AUDIENCE; missing: {missing}"
            )
        if self.jwt_mode and (self.mcp_auth_token is not None or self.mcp_tokens_file is not None):
            # One authority names the clients: a JWT subject and a tokens-file name that happen
            # to be equal would otherwise share a key space in per-client mode.
            raise ConfigurationError(
                "the JWT mode (MCP_JWT_*) cannot be combined with MCP_AUTH_TOKEN or MCP_TOKENS_FILE"
            )
        if self.mcp_jwt_required_scopes and not self.jwt_mode:
            raise ConfigurationError("MCP_JWT_REQUIRED_SCOPES needs the JWT mode (MCP_JWT_*)")
        return self

    def store_config(self) -> StoreConfig:
        """The store's part of the settings, as the value `memory.open_store` takes."""
        # Only the fields given: an SQLITE_PATH left to its default is not one set beside DATABASE_URL.
        given = StoreConfig.model_fields.keys() & self.model_fields_set
        return StoreConfig(**{name: getattr(self, name) for name in given})

    @property
    def jwt_mode(self) -> bool:
        return self.mcp_jwt_jwks_url is not None

    def jwt_settings(self) -> tuple[str, str, str] | None:
        """(JWKS URL, issuer, audience) in the JWT mode, else None."""
        if self.mcp_jwt_jwks_url and self.mcp_jwt_issuer and self.mcp_jwt_audience:
            return self.mcp_jwt_jwks_url, self.mcp_jwt_issuer, self.mcp_jwt_audience
        return None

    @property
    def auth_configured(self) -> bool:
        return self.jwt_mode or self.mcp_auth_token is not None or self.mcp_tokens_file is not None


def describe_validation_error(error: ValidationError) -> str:
    """One line per invalid setting, named as its environment variable, never with its value."""
    lines = []
    for problem in error.errors(include_url=False, include_input=False, include_context=False):
        name = str(problem["loc"][0]).upper() if problem["loc"] else "settings"
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{name}: {message}")
    return "\n".join(lines)


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_https_or_loopback(url: str) -> bool:
    parts = urlsplit(url)
    if not _is_http_url(url):
        return False
    if parts.scheme == "https":
        return True
    host = parts.hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(files: Sequence[Path]) -> Settings:
    """Settings from the environment and `files` (later files win over earlier ones); a setting
    that cannot be read stops the program, naming it."""
    for path in files:
        if not path.is_file():
            raise SystemExit(f"session-memory-mcp: --env-file {path}: no such file")
    try:
        return Settings(_env_file=tuple(files) or None)
    except ValidationError as exc:
        raise SystemExit(f"session-memory-mcp: invalid settings\n{describe_validation_error(exc)}") from None
    except ConfigurationError as exc:
        raise SystemExit(f"session-memory-mcp: {exc}") from None
