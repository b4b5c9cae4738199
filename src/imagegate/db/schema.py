"""The tables. Migrations in imagegate/migrations create exactly these."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

Micros = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    balance_micros: Mapped[int] = mapped_column(Micros, default=0)  # available: not held, not spent
    held_micros: Mapped[int] = mapped_column(Micros, default=0)
    spent_micros: Mapped[int] = mapped_column(Micros, default=0)
    deposits_micros: Mapped[int] = mapped_column(Micros, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (  # the money rules, enforced by the database as well (migration 0002)
        CheckConstraint("balance_micros >= 0", name="ck_accounts_balance_not_negative"),
        CheckConstraint("held_micros >= 0", name="ck_accounts_held_not_negative"),
        CheckConstraint("spent_micros >= 0", name="ck_accounts_spent_not_negative"),
        CheckConstraint("deposits_micros = balance_micros + held_micros + spent_micros",
                        name="ck_accounts_deposits_accounted"),
    )


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the secret
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, to recognise a key in listings
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    spend_limit_micros: Mapped[int | None] = mapped_column(Micros, nullable=True)
    spent_micros: Mapped[int] = mapped_column(Micros, default=0)
    held_micros: Mapped[int] = mapped_column(Micros, default=0)
    allowed_models: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list; NULL = all
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("held_micros >= 0", name="ck_api_keys_held_not_negative"),
        CheckConstraint("spent_micros >= 0", name="ck_api_keys_spent_not_negative"),
    )


class StoredFile(Base):
    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(8))
    blob_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Hold(Base):
    __tablename__ = "holds"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), nullable=True)
    model: Mapped[str] = mapped_column(String(100))
    amount_micros: Mapped[int] = mapped_column(Micros)
    charged_micros: Mapped[int | None] = mapped_column(Micros, nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # held | settled | released
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the process of a sync request's hold

    __table_args__ = (
        Index("ix_holds_status_expires", "status", "expires_at"),
        Index("ix_holds_owner", "owner"),
        CheckConstraint("amount_micros >= 0", name="ck_holds_amount_not_negative"),
        CheckConstraint("charged_micros IS NULL OR (charged_micros >= 0 AND charged_micros <= amount_micros)",
                        name="ck_holds_charge_within_hold"),
    )


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    transaction_id: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # deposit | hold | settle | release
    amount_micros: Mapped[int] = mapped_column(Micros)
    hold_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    memo: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), nullable=True)
    model: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))  # pending | processing | completed | failed
    request: Mapped[str] = mapped_column(Text)  # JSON: prompt, options, input blob keys
    result: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON: data, usage
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    hold_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    billing_transaction_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    upstream_job: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON: provider's job id, poll URL
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    deadline_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_tasks_status_lease", "status", "lease_expires_at"),)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    route: Mapped[str] = mapped_column(String(64))
    body_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the process running the request


class Instance(Base):
    """A running gateway process, alive while it heart-beats (see db.presence)."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
