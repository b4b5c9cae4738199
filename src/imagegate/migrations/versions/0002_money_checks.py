"""money checks: the database itself refuses a negative amount or a broken account invariant

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

ACCOUNT_CHECKS = {
    "ck_accounts_balance_not_negative": "balance_micros >= 0",
    "ck_accounts_held_not_negative": "held_micros >= 0",
    "ck_accounts_spent_not_negative": "spent_micros >= 0",
    "ck_accounts_deposits_accounted": "deposits_micros = balance_micros + held_micros + spent_micros",
}
KEY_CHECKS = {
    "ck_api_keys_held_not_negative": "held_micros >= 0",
    "ck_api_keys_spent_not_negative": "spent_micros >= 0",
}
HOLD_CHECKS = {
    "ck_holds_amount_not_negative": "amount_micros >= 0",
    "ck_holds_charge_within_hold": "charged_micros IS NULL OR (charged_micros >= 0 AND charged_micros <= amount_micros)",
}


def upgrade() -> None:
    for table, checks in (("accounts", ACCOUNT_CHECKS), ("api_keys", KEY_CHECKS), ("holds", HOLD_CHECKS)):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, condition in checks.items():
                batch_op.create_check_constraint(name, condition)


def downgrade() -> None:
    for table, checks in (("holds", HOLD_CHECKS), ("api_keys", KEY_CHECKS), ("accounts", ACCOUNT_CHECKS)):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name in checks:
                batch_op.drop_constraint(name, type_="check")
