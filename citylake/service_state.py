"""The data service's state: consumers' hashed secrets, applications and grants, the access log.

SQLite under <data root>/metadata/service.db locally (WAL: a committed row survives a crash of
the service), PostgreSQL in the production profile (database citylake_service). SQLAlchemy Core,
so both speak the same statements; every value is a bound parameter.

An application (申请) names a resource, a purpose, the fields (and which personal fields in
clear), the rows (column → allowed values, e.g. one county) and a period. The owning department
approves or rejects it (审批); an approved application *is* the grant, valid from its first to
its last day. The access log has one row per request, granted or denied, written before the
answer leaves (citylake.service.audit).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import queue
import threading
import uuid

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from citylake.config import Environment

metadata = sa.MetaData()

consumer_secrets = sa.Table(
    "consumer_secrets",
    metadata,
    sa.Column("code", sa.String(32), primary_key=True),
    sa.Column("secret_hash", sa.String(256), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

applications = sa.Table(
    "applications",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("consumer", sa.String(32), nullable=False, index=True),
    sa.Column("resource", sa.String(64), nullable=False),
    sa.Column("owner", sa.String(32), nullable=False, index=True),
    sa.Column("purpose", sa.Text, nullable=False),
    sa.Column("legal_basis", sa.Text, nullable=False),
    sa.Column("fields", sa.JSON, nullable=False),
    sa.Column("clear_fields", sa.JSON, nullable=False),
    sa.Column("rows", sa.JSON, nullable=False),
    sa.Column("valid_from", sa.Date, nullable=False),
    sa.Column("valid_until", sa.Date, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decided_by", sa.String(64)),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.Column("decision_note", sa.Text),
)

access_log = sa.Table(
    "access_log",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("consumer", sa.String(32)),
    sa.Column("token_id", sa.String(36)),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("service", sa.String(16)),
    sa.Column("resource", sa.String(64)),
    sa.Column("grant_id", sa.String(36)),
    sa.Column("purpose", sa.Text),
    sa.Column("fields", sa.JSON),
    sa.Column("clear_fields", sa.JSON),
    sa.Column("rows_returned", sa.Integer),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("client", sa.String(64)),
)

# A counter each decision and revocation raises in its own transaction: a process holding the
# grants in memory reads one row per request to learn whether they are still current.
state_changes = sa.Table(
    "state_changes",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("generation", sa.BigInteger, nullable=False),
)

STATUSES = ("pending", "approved", "rejected", "revoked")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Application(BaseModel):
    """An application (申请) and its decision (审批); approved, it is the grant."""

    model_config = ConfigDict(frozen=True)

    id: str
    consumer: str
    resource: str
    owner: str
    purpose: str
    legal_basis: str
    fields: tuple[str, ...]
    clear_fields: tuple[str, ...]
    rows: dict[str, list[str]]
    valid_from: dt.date
    valid_until: dt.date
    status: str = Field(
        description="pending 待审批 / approved 已批准 / rejected 已驳回 / revoked 已撤销"
    )
    submitted_at: dt.datetime
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_note: str | None

    def as_json(self) -> dict:
        return self.model_dump(mode="json")


def _application(row: sa.Row) -> Application:
    values = dict(row._mapping)
    values["fields"] = tuple(values["fields"])
    values["clear_fields"] = tuple(values["clear_fields"])
    for name in ("submitted_at", "decided_at"):  # SQLite gives back naive datetimes
        if values[name] is not None and values[name].tzinfo is None:
            values[name] = values[name].replace(tzinfo=dt.UTC)
    return Application(**values)


class ApplicationError(ValueError):
    """An application cannot move as asked (unknown, not the owner's, decided already)."""


class NoSuchApplication(ApplicationError):
    """No application has that id."""


class Store:
    """The service's state database. Thread-safe: one engine, a connection per statement."""

    def __init__(self, url: str):
        self.url = url
        kwargs: dict = {"future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs |= {"pool_size": 8, "max_overflow": 8, "pool_pre_ping": True}
        self.engine = sa.create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)
        try:
            with self.engine.begin() as con:
                if con.execute(self._generation).first() is None:
                    con.execute(sa.insert(state_changes).values(name="grants", generation=0))
        except sa.exc.IntegrityError:  # another process inserted it first
            pass
        self._grants: tuple[int, dt.date, dict[str, list[Application]]] | None = None
        self._queue: queue.Queue = queue.Queue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()

    _generation = sa.select(state_changes.c.generation).where(state_changes.c.name == "grants")
    _bump = (
        sa.update(state_changes)
        .where(state_changes.c.name == "grants")
        .values(generation=state_changes.c.generation + 1)
    )

    @classmethod
    def for_environment(cls, env: Environment) -> Store:
        if env.metadata.backend == "sqlite":
            (env.root / "metadata").mkdir(parents=True, exist_ok=True)
        return cls(env.metadata_url("service"))

    def dispose(self) -> None:
        self.engine.dispose()

    # -- secrets -------------------------------------------------------------------------

    def secret_hash(self, code: str) -> str | None:
        with self.engine.connect() as con:
            row = con.execute(
                sa.select(consumer_secrets.c.secret_hash).where(consumer_secrets.c.code == code)
            ).first()
        return row[0] if row else None

    def set_secret_hash(self, code: str, secret_hash: str) -> None:
        with self.engine.begin() as con:
            con.execute(sa.delete(consumer_secrets).where(consumer_secrets.c.code == code))
            con.execute(
                sa.insert(consumer_secrets).values(
                    code=code, secret_hash=secret_hash, created_at=_now()
                )
            )

    # -- applications and grants ---------------------------------------------------------

    def submit(
        self,
        consumer: str,
        resource: str,
        owner: str,
        purpose: str,
        legal_basis: str,
        fields: list[str],
        clear_fields: list[str],
        rows: dict[str, list[str]],
        valid_from: dt.date,
        valid_until: dt.date,
    ) -> Application:
        values = {
            "id": str(uuid.uuid4()),
            "consumer": consumer,
            "resource": resource,
            "owner": owner,
            "purpose": purpose,
            "legal_basis": legal_basis,
            "fields": fields,
            "clear_fields": clear_fields,
            "rows": rows,
            "valid_from": valid_from,
            "valid_until": valid_until,
            "status": "pending",
            "submitted_at": _now(),
        }
        with self.engine.begin() as con:
            con.execute(sa.insert(applications).values(**values))
        return self.application(values["id"])

    def application(self, application_id: str) -> Application:
        with self.engine.connect() as con:
            row = con.execute(
                sa.select(applications).where(applications.c.id == application_id)
            ).first()
        if row is None:
            raise NoSuchApplication(f"no application {application_id}")
        return _application(row)

    def applications(
        self, consumer: str | None = None, owner: str | None = None, status: str | None = None
    ) -> list[Application]:
        query = sa.select(applications).order_by(applications.c.submitted_at)
        if consumer is not None and owner is not None:  # a department sees both sides
            query = query.where(
                sa.or_(applications.c.consumer == consumer, applications.c.owner == owner)
            )
        elif consumer is not None:
            query = query.where(applications.c.consumer == consumer)
        elif owner is not None:
            query = query.where(applications.c.owner == owner)
        if status is not None:
            query = query.where(applications.c.status == status)
        with self.engine.connect() as con:
            return [_application(r) for r in con.execute(query)]

    def grants(self, consumer: str, resource: str | None, day: dt.date) -> list[Application]:
        """The consumer's approved applications valid on `day`, for one resource or (None) all.

        Held in memory and read again only when a decision or revocation (by any process) has
        raised the generation since, or on a new day: one row read per request instead of a
        query of the applications and a model built per grant."""
        with self.engine.connect() as con:
            generation = con.execute(self._generation).scalar_one()
            held = self._grants
            if held is None or held[:2] != (generation, day):
                # The generation is read first: a decision committed between the two reads is
                # in the grants read here and raises the generation, so they are read again.
                query = sa.select(applications).where(
                    applications.c.status == "approved",
                    applications.c.valid_from <= day,
                    applications.c.valid_until >= day,
                )
                by_consumer: dict[str, list[Application]] = {}
                for row in con.execute(query):
                    by_consumer.setdefault(row.consumer, []).append(_application(row))
                held = self._grants = (generation, day, by_consumer)
        return [g for g in held[2].get(consumer, ()) if resource is None or g.resource == resource]

    def decide(
        self, application_id: str, owner: str, approve: bool, decided_by: str, note: str = ""
    ) -> Application:
        """Approve or reject a pending application; only its owning department may."""
        application = self.application(application_id)
        if application.owner != owner:
            raise ApplicationError(
                f"application {application_id} is for {application.resource}, owned by "
                f"{application.owner}, not {owner}"
            )
        if application.status != "pending":
            raise ApplicationError(f"application {application_id} is {application.status}")
        with self.engine.begin() as con:
            con.execute(
                sa.update(applications)
                .where(applications.c.id == application_id, applications.c.status == "pending")
                .values(
                    status="approved" if approve else "rejected",
                    decided_by=decided_by,
                    decided_at=_now(),
                    decision_note=note,
                )
            )
            con.execute(self._bump)
        return self.application(application_id)

    def revoke(self, application_id: str, owner: str, decided_by: str, note: str) -> Application:
        application = self.application(application_id)
        if application.owner != owner:
            raise ApplicationError(f"application {application_id} is not owned by {owner}")
        with self.engine.begin() as con:
            con.execute(
                sa.update(applications)
                .where(applications.c.id == application_id)
                .values(
                    status="revoked", decided_by=decided_by, decided_at=_now(), decision_note=note
                )
            )
            con.execute(self._bump)
        return self.application(application_id)

    # -- the access log ------------------------------------------------------------------
    # One writer thread commits what the requests hand it, many rows per transaction when many
    # arrive together (group commit): each request waits for the commit holding its row, so no
    # answer leaves before its row is durable, and concurrent requests never wait on SQLite's
    # write lock.

    def record_async(self, entry: dict) -> concurrent.futures.Future:
        """Queue one access; the future completes once its row is committed (or fails)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._writer_lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(
                    target=self._write_loop, name="access-log-writer", daemon=True
                )
                self._writer.start()
        self._queue.put((dict(entry, at=_now()), future))
        return future

    def _write_loop(self) -> None:
        statement = sa.insert(access_log)
        while True:
            batch = [self._queue.get()]
            while len(batch) < 1000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                with self.engine.begin() as con:
                    con.execute(statement, [entry for entry, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every waiting request learns of it
                for _, future in batch:
                    future.set_exception(exc)
            else:
                for _, future in batch:
                    future.set_result(None)

    def requests_since(self, consumer: str, since: dt.datetime) -> int:
        with self.engine.connect() as con:
            return con.execute(
                sa.select(sa.func.count())
                .select_from(access_log)
                .where(access_log.c.consumer == consumer, access_log.c.at >= since)
            ).scalar_one()

    def access_rows(self, after_id: int = 0, limit: int | None = None) -> list[dict]:
        query = sa.select(access_log).where(access_log.c.id > after_id).order_by(access_log.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as con:
            return [dict(r._mapping) for r in con.execute(query)]


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    # WAL with synchronous=NORMAL: a committed access row is in the log file before the answer
    # leaves, so it survives the service being killed (not a power cut: that is PostgreSQL's job).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
