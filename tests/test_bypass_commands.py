"""django-tenants' commands that would create, change or delete tenants behind the engine's
back are refused: exit 1, one line naming our command, nothing changed."""

from __future__ import annotations

import pytest
from django.core.management import get_commands
from psycopg import sql

from tenancy.services.tenants import create_tenant
from tests.conftest import connect, manage, query, run_command

KEPT = "tenant_org_bypassa1"  # a tenant with its schema
LOST = "tenant_org_bypassb2"  # a registered tenant whose schema is gone

# command, django-tenants' own arguments (accepted, ignored), what the refusal names
REFUSED = [
    ("create_tenant", ["--schema_name", "tenant_org_new1", "--noinput"], "tenant_create"),
    ("delete_tenant", ["-s", KEPT, "--noinput"], "tenant_drop"),
    (
        "clone_tenant",
        ["--clone_from", KEPT, "--clone_tenant_fields", "yes", "--schema_name", "tenant_x"],
        "tenant_create",
    ),
    ("rename_schema", ["--rename_from", KEPT, "--rename_to", "tenant_org_other"], "not supported"),
    ("create_missing_schemas", [], "tenant_recreate"),
    ("create_tenant_superuser", ["--schema", KEPT, "--noinput"], "createsuperuser"),
]


@pytest.fixture
def fleet(public_ready: None) -> None:
    create_tenant("org_bypassa1")
    create_tenant("org_bypassb2")
    with connect() as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(LOST)))


def state() -> tuple:
    return (
        query("SELECT schema_name, auth0_org_id, status FROM tenant_registry ORDER BY 1"),
        query("SELECT domain, tenant_id FROM tenant_domains ORDER BY 1"),
        query("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\\_%' ORDER BY 1"),
        query("SELECT tenant_schema, migration_version FROM tenant_migrations ORDER BY 1, 2"),
        query("SELECT count(*) FROM audit_logs"),
    )


def test_our_commands_replace_django_tenants_ones():
    commands = get_commands()
    assert {commands[name] for name, _, _ in REFUSED} == {"tenancy"}


@pytest.mark.parametrize(("command", "args", "instead"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_with_one_line_naming_ours_and_nothing_changed(fleet, command, args, instead):
    before = state()
    process = manage(command, *args)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1, out + err
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"{command} is refused" in err and instead in err
    assert state() == before
    assert query("SELECT 1 FROM pg_namespace WHERE nspname = %s", [LOST]) == []


@pytest.mark.parametrize(("command", "args", "instead"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_through_call_command_too(command, args, instead):
    code, out, err = run_command(command)
    assert code == 1 and out == "" and instead in err


@pytest.mark.parametrize(("command", "args", "instead"), REFUSED, ids=[r[0] for r in REFUSED])
def test_help_explains(command, args, instead):
    process = manage(command, "--help")
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0
    text = " ".join(out.split())
    assert f"Refused: django-tenants' {command}" in text and instead in text


def test_domain_commands_are_left_to_django_tenants():
    """create_domain / delete_domain change only tenant_domains rows, which the engine
    neither reads nor writes outside creation and drop: kept as they are."""
    commands = get_commands()
    assert commands["create_domain"] == commands["delete_domain"] == "django_tenants"
