"""Bulk creation, `tenant_create --from-file FILE.csv`, on real PostgreSQL: each row its
own atomic creation, bad rows reported by line with the rest created, idempotent re-runs,
tags, the hourly limit (stopping the batch, named with its setting and reopen time, or
overridden and audited), dry runs, the warm pool; and the limit's message in the admin."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management.base import OutputWrapper
from django.core.management.color import no_style

from tenancy.management.output import RowProgress
from tenancy.services import bulk_creation, pool, tenants
from tests.conftest import query, run_command
from tests.test_admin import client_for
from tests.test_tenants_creation import _manage_on, snapshot

ADD = "/admin/tenancy/tenant/add/"
SETTING = 'TENANCY["MAX_CREATIONS_PER_HOUR"]'


def csv_file(tmp_path: Path, text: str, name: str = "tenants.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def bulk(*args: str) -> tuple[int, str, str]:
    return run_command("tenant_create", "--actor", "ops@example.com", "--from-file", *args)


def registry() -> list[tuple]:
    return query(
        "SELECT auth0_org_id, organization_name, schema_name, tags FROM public.tenant_registry "
        "ORDER BY auth0_org_id"
    )


def schemas() -> list[str]:
    rows = query("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\\_%%' ORDER BY 1")
    return [r[0] for r in rows]


def reopen_time(limit: int) -> str:
    """When the server says creation reopens: an hour after the oldest of the last
    ``limit`` creations, as the message prints it (UTC)."""
    [(when,)] = query(
        "SELECT to_char((created_at + interval '1 hour') AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD HH24:MI:SS') FROM public.audit_logs WHERE action = 'tenant.create' "
        "ORDER BY created_at DESC OFFSET %s LIMIT 1",
        [limit - 1],
    )
    return f"Creation reopens at {when} UTC"


FLEET = """org_id,name,tags
org_alpha1,Alpha,eu;beta
org-bad!,Broken,
org_beta2,"Beta, Inc.",enterprise eu
org_gamma3,,Not_A_Tag
org_delta4
org_alpha1,Alpha again,
"""


# -- rows: the good ones created, the bad ones reported -------------------------------------
def test_a_bad_row_is_reported_and_the_rest_are_created(public_ready: None, tmp_path: Path) -> None:
    code, out, err = bulk(str(csv_file(tmp_path, FLEET)))
    assert code == 1, err
    assert "line 3: org-bad!: FAILED: Invalid Auth0 organization id 'org-bad!'" in out
    assert "line 5: org_gamma3: FAILED: Invalid tag 'Not_A_Tag'" in out
    assert "line 7: org_alpha1: FAILED: duplicate of line 2" in out
    assert "line 2: org_alpha1: created (schema tenant_org_alpha1, built directly)" in out
    assert "row(s) of" in out and "created 3, already existed 0, failed 3" in out
    assert registry() == [
        ("org_alpha1", "Alpha", "tenant_org_alpha1", ["beta", "eu"]),
        ("org_beta2", "Beta, Inc.", "tenant_org_beta2", ["enterprise", "eu"]),
        ("org_delta4", "org_delta4", "tenant_org_delta4", []),
    ]
    assert schemas() == ["tenant_org_alpha1", "tenant_org_beta2", "tenant_org_delta4"]
    assert query("SELECT DISTINCT actor FROM public.audit_logs WHERE action = 'tenant.create'") == [
        ("ops@example.com",)
    ]


def test_a_failed_creation_is_a_failed_row(
    public_ready: None, tmp_path: Path, monkeypatch: Any
) -> None:
    real = tenants.create_tenant

    def fail_for_beta(org_id: str, *args: Any, **kwargs: Any) -> Any:
        if org_id == "org_beta2":
            raise tenants.TenantError("Creating tenant org_beta2 failed at step 'audit': boom.")
        return real(org_id, *args, **kwargs)

    monkeypatch.setattr(tenants, "create_tenant", fail_for_beta)
    path = csv_file(tmp_path, "org_alpha1,Alpha\norg_beta2,Beta\norg_gamma3,Gamma\n")
    code, out, _ = bulk(str(path))
    assert code == 1
    assert "line 2: org_beta2: FAILED: Creating tenant org_beta2 failed at step 'audit'" in out
    assert [r[0] for r in registry()] == ["org_alpha1", "org_gamma3"]


def test_case_twins_and_renamed_tenants_are_refused_rows(
    public_ready: None, tmp_path: Path
) -> None:
    tenants.create_tenant("org_kept1", "Kept", actor="test")
    path = csv_file(tmp_path, "org_Twin2,Twin\norg_twin2,Twin\norg_kept1,Another name\n")
    code, out, _ = bulk(str(path))
    assert code == 1
    assert "line 2: org_twin2: FAILED: differs only in letter case from org_Twin2 on line 1" in out
    assert "line 3: org_kept1: FAILED: already exists as 'Kept'" in out
    assert [r[:2] for r in registry()] == [("org_Twin2", "Twin"), ("org_kept1", "Kept")]


def test_a_rerun_is_idempotent(public_ready: None, tmp_path: Path) -> None:
    path = csv_file(tmp_path, "org_alpha1,Alpha,eu\norg_beta2,,\n# a comment\n\norg_gamma3,G\n")
    code, _, err = bulk(str(path))
    assert code == 0, err
    before = snapshot()
    code, out, err = bulk(str(path))
    assert code == 0, err
    assert "line 1: org_alpha1: exists (schema tenant_org_alpha1)" in out
    assert "line 5: org_gamma3: exists" in out
    assert "created 0, already existed 3, failed 0" in out
    assert snapshot() == before


def test_an_existing_tenant_with_other_tags_exists_and_keeps_them(
    public_ready: None, tmp_path: Path
) -> None:
    tenants.create_tenant("org_alpha1", "Alpha", tags=["eu"], actor="test")
    code, out, _ = bulk(str(csv_file(tmp_path, "org_alpha1,Alpha,gold\n")))
    assert code == 0
    assert "exists (schema tenant_org_alpha1); its tags are eu, not changed" in out
    assert registry()[0][3] == ["eu"]


def test_json_report(public_ready: None, tmp_path: Path) -> None:
    tenants.create_tenant("org_old1", actor="test")
    path = csv_file(tmp_path, "org_old1\norg_new2,New,eu beta\nnot-an-id,Bad Row\n")
    code, out, _ = bulk(str(path), "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert report["summary"] == {
        "created": 1,
        "would_create": 0,
        "exists": 1,
        "failed": 1,
        "not_created": 0,
    }
    assert report["exit_code"] == 1 and report["dry_run"] is False
    by_line = {r["line"]: r for r in report["rows"]}
    assert by_line[1]["status"] == "exists"
    assert by_line[2]["status"] == "created" and by_line[2]["tags"] == ["beta", "eu"]
    assert by_line[2]["schema"] == "tenant_org_new2" and by_line[2]["path"] == "direct"
    assert by_line[3]["status"] == "failed"
    assert "Invalid Auth0 organization id" in by_line[3]["reason"]
    assert by_line[3]["name"] == "Bad Row"  # a failed row keeps the name the file gave


# -- the hourly creation limit ---------------------------------------------------------------
def test_the_limit_stops_the_batch_naming_the_setting_and_the_reopen_time(
    public_ready: None, tmp_path: Path, settings: Any
) -> None:
    settings.TENANCY = {**settings.TENANCY, "MAX_CREATIONS_PER_HOUR": 2}
    tenants.create_tenant("org_early1", "Early", actor="test")
    rows = "org_early1,Early\norg_a2\norg_b3\norg_c4\nbad!\n"
    code, out, _ = bulk(str(csv_file(tmp_path, rows)))
    assert code == 1
    assert "line 2: org_a2: created" in out
    assert "line 3: org_b3: NOT CREATED: the hourly creation limit is reached" in out
    assert "line 4: org_c4: NOT CREATED" in out
    assert "line 5: bad!: FAILED: Invalid Auth0 organization id" in out  # still validated
    assert "created 1, already existed 1, failed 1, not created (hourly limit) 2" in out
    assert SETTING in out and "TENANCY_MAX_CREATIONS_PER_HOUR" in out
    assert reopen_time(2) in out
    assert "--override-hourly-limit creates past it (audited)." in out
    assert [r[0] for r in registry()] == ["org_a2", "org_early1"]
    assert schemas() == ["tenant_org_a2", "tenant_org_early1"]


def test_the_override_creates_past_the_limit_and_is_audited(
    public_ready: None, tmp_path: Path, settings: Any
) -> None:
    settings.TENANCY = {**settings.TENANCY, "MAX_CREATIONS_PER_HOUR": 1}
    path = csv_file(tmp_path, "org_a1\norg_b2\norg_c3\n")
    code, out, err = bulk(str(path), "--override-hourly-limit")
    assert code == 0, err
    assert "created 3" in out and "2 tenant(s) created past the hourly limit" in out
    assert schemas() == ["tenant_org_a1", "tenant_org_b2", "tenant_org_c3"]
    [(actor, details)] = query(
        "SELECT actor, details FROM public.audit_logs WHERE action = %s",
        [tenants.HOURLY_OVERRIDE_ACTION],
    )
    assert actor == "ops@example.com"
    assert details == {
        "setting": SETTING,
        "limit": 1,
        "count": 2,
        "auth0_org_ids": ["org_b2", "org_c3"],
        "source": str(path),
    }
    past = query(
        "SELECT details->>'auth0_org_id' FROM public.audit_logs WHERE action = 'tenant.create' "
        "AND details ? 'past_hourly_limit' ORDER BY 1"
    )
    assert past == [("org_b2",), ("org_c3",)]


def test_an_override_within_the_limit_writes_no_override_row(
    public_ready: None, tmp_path: Path
) -> None:
    code, _, _ = bulk(str(csv_file(tmp_path, "org_a1\n")), "--override-hourly-limit")
    assert code == 0
    assert query(
        "SELECT count(*) FROM public.audit_logs WHERE action = %s",
        [tenants.HOURLY_OVERRIDE_ACTION],
    ) == [(0,)]


def test_a_single_creation_can_override_the_limit_too(public_ready: None, settings: Any) -> None:
    settings.TENANCY = {**settings.TENANCY, "MAX_CREATIONS_PER_HOUR": 0}
    code, _, err = run_command("tenant_create", "org_one1")
    assert code == 1 and f"Tenant creation is off: {SETTING} is 0" in err
    assert "--override-hourly-limit creates past it (audited)." in err  # the way past it
    code, out, err = run_command("tenant_create", "org_one1", "--override-hourly-limit")
    assert code == 0, err
    assert "1 tenant(s) created past the hourly limit" in out
    assert query(
        "SELECT details->'count' FROM public.audit_logs WHERE action = %s",
        [tenants.HOURLY_OVERRIDE_ACTION],
    ) == [(1,)]


# -- dry run -----------------------------------------------------------------------------------
def test_a_dry_run_checks_every_row_and_changes_nothing(public_ready: None, tmp_path: Path) -> None:
    tenants.create_tenant("org_old1", "Old", actor="test")
    before = snapshot()
    path = csv_file(tmp_path, "org_old1,Old\norg_new2,New,eu\norg_new2\norg_x3,,Bad Tag\n")
    code, out, _ = bulk(str(path), "--dry-run")
    assert code == 1
    assert "line 1: org_old1: exists" in out
    assert "line 2: org_new2: would create (schema tenant_org_new2)" in out
    assert "line 3: org_new2: FAILED: duplicate of line 2" in out
    assert "line 4: org_x3: FAILED: Invalid tag" in out
    assert "would create 1, already existed 1, failed 2" in out
    assert "Dry run: nothing was changed." in out
    assert snapshot() == before


def test_a_dry_run_counts_the_hourly_limit(
    public_ready: None, tmp_path: Path, settings: Any
) -> None:
    settings.TENANCY = {**settings.TENANCY, "MAX_CREATIONS_PER_HOUR": 2}
    tenants.create_tenant("org_old1", actor="test")
    before = snapshot()
    path = csv_file(tmp_path, "org_a1\norg_b2\norg_c3\n")
    code, out, _ = bulk(str(path), "--dry-run")
    assert code == 1
    assert "line 1: org_a1: would create" in out and "line 2: org_b2: NOT CREATED" in out
    assert f"A real run would stop after 1 creation(s): {SETTING} is 2" in out
    code, out, _ = bulk(str(path), "--dry-run", "--override-hourly-limit")
    assert code == 0 and "would create 3" in out
    assert snapshot() == before


def test_a_dry_run_of_one_tenant(public_ready: None) -> None:
    before = snapshot()
    code, out, err = run_command("tenant_create", "org_one1", "--name", "One", "--dry-run")
    assert code == 0, err
    assert "Would create tenant One: schema tenant_org_one1" in out
    assert "Nothing was changed." in out and snapshot() == before


# -- the warm pool -----------------------------------------------------------------------------
def test_rows_claim_pool_schemas_then_build_directly(
    public_ready: None, sql_dir: Path, settings: Any, monkeypatch: Any, tmp_path: Path
) -> None:
    settings.TENANCY = {**settings.TENANCY, "POOL_SIZE": 2}
    monkeypatch.setattr(tenants, "REFILL_TASK", "tests.test_pool.no_refill")
    assert len(pool.fill(2, actor="test").built) == 2
    path = csv_file(tmp_path, "org_a1,A,eu\norg_b2,B\norg_c3,C\n")
    code, out, err = bulk(str(path), "--format", "json")
    assert code == 0, err
    paths = [r["path"] for r in json.loads(out)["rows"]]
    assert paths == ["pool", "pool", "direct"]
    assert schemas() == ["tenant_org_a1", "tenant_org_b2", "tenant_org_c3"]
    assert registry()[0] == ("org_a1", "A", "tenant_org_a1", ["eu"])
    assert query("SELECT count(*) FROM public.tenant_pool") == [(0,)]
    assert query("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenancy\\_pool\\_%%'") == [
        (0,)
    ]


# -- the file and the command line ------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "holds no tenant rows"),
        (b"org_id,name,tags\n\n# none\n", "holds no tenant rows"),
        (b"PK\x03\x04\x00\x00binary", "is not a CSV file: it holds binary data"),
        (b"org_a1,\xff\xfe\n", "is not a CSV file: not UTF-8 text"),
        (b'org_a1,"unclosed\n', "is not valid CSV: line 1"),
        (b"org_id,tags\norg_a1,eu\n", "the header must be org_id,name,tags"),
    ],
    ids=["missing", "empty", "header-only", "binary", "not-utf8", "bad-quote", "bad-header"],
)
def test_bad_files_are_one_line_errors(
    public_ready: None, tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_bytes(content)
    before = snapshot()
    code, out, err = bulk(str(path))
    assert code == 1 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and out == ""
    assert snapshot() == before


def test_a_directory_is_refused(public_ready: None, tmp_path: Path) -> None:
    code, _, err = bulk(str(tmp_path))
    assert code == 1 and "is a directory" in err


def test_a_bom_and_crlf_lines_are_read(public_ready: None, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufefforg_id,name\r\norg_a1,Ä Corp\r\n".encode())
    code, _, err = bulk(str(path))
    assert code == 0, err
    assert registry()[0][:2] == ("org_a1", "Ä Corp")


def test_too_many_columns_is_a_bad_row(public_ready: None, tmp_path: Path) -> None:
    code, out, _ = bulk(str(csv_file(tmp_path, "org_a1,Acme, Inc,eu\norg_b2,B,,\n")))
    assert code == 1
    assert "line 1: org_a1: FAILED: 4 columns, at most 3 expected" in out
    assert [r[0] for r in registry()] == ["org_b2"]  # trailing empty cells are no columns


@pytest.mark.parametrize(
    "extra", [["org_a1"], ["--name", "X"], ["--tag", "eu"]], ids=["org-id", "name", "tag"]
)
def test_from_file_with_a_tenant_of_the_command_line_is_a_usage_error(
    public_ready: None, tmp_path: Path, extra: list[str]
) -> None:
    path = csv_file(tmp_path, "org_b2\n")
    code, _, err = run_command("tenant_create", *extra, "--from-file", str(path))
    assert code == 1 and "--from-file takes the org ids" in err
    assert registry() == []


def test_no_org_id_and_no_file_is_a_usage_error(public_ready: None) -> None:
    code, _, err = run_command("tenant_create")
    assert code == 1 and "Give an ORG_ID, or --from-file FILE.csv." in err


def test_a_fresh_database_gets_its_public_schema_first(fresh_database: str, tmp_path: Path) -> None:
    path = str(csv_file(tmp_path, "org_a1,A\nbad!\n"))
    dry = _manage_on(fresh_database, "tenant_create", "--from-file", path, "--dry-run")
    assert dry.returncode == 1 and "Traceback" not in dry.stderr
    assert "migrate_tenants --public" in dry.stderr  # changes nothing, says what to run
    made = _manage_on(fresh_database, "tenant_create", "--from-file", path)
    assert made.returncode == 1, made.stderr
    assert "Set up the public schema first" in made.stdout
    # Piped: one line per row, then the summary.
    lines = made.stdout.splitlines()[1:]
    assert len(lines) == 3
    assert lines[0] == "line 1: org_a1: created (schema tenant_org_a1, built directly)"
    assert lines[1].startswith("line 2: bad!: FAILED: Invalid Auth0 organization id 'bad!'")
    assert lines[2] == (
        f"2 row(s) of {path}: created 1, already existed 0, failed 1, not created (hourly limit) 0."
    )


def test_tags_cells_split_on_semicolons_spaces_and_commas() -> None:
    assert bulk_creation.split_tag_cell(" eu; beta  gold,x ") == ["eu", "beta", "gold", "x"]
    assert bulk_creation.split_tag_cell("") == []


def test_the_progress_bar_on_a_terminal() -> None:
    out = StringIO()
    progress = RowProgress(OutputWrapper(out), no_style(), total=2, verbosity=1, tty=True)
    progress.row("line 1: org_a1: created", failed=False)
    progress.row("line 2: bad: FAILED: Invalid", failed=True)
    text = out.getvalue()
    assert "line 1: org_a1: created" not in text  # the bar, not a line, on a terminal
    assert "line 2: bad: FAILED: Invalid" in text  # failures above the bar
    assert "2/2  failed 1" in text and "[" + "#" * 30 + "]" in text


def test_piped_output_is_one_line_per_row() -> None:
    out = StringIO()
    progress = RowProgress(OutputWrapper(out), no_style(), total=2, verbosity=1, tty=False)
    progress.row("line 1: org_a1: created", failed=False)
    progress.row("line 2: bad: FAILED: Invalid", failed=True)
    assert out.getvalue().splitlines() == [
        "line 1: org_a1: created",
        "line 2: bad: FAILED: Invalid",
    ]


# -- the admin's Create tenant page -----------------------------------------------------------
def test_the_create_page_tells_the_limit_with_its_setting_and_reopen_time(
    public_ready: None, superuser: User, settings: Any
) -> None:
    settings.TENANCY = {**settings.TENANCY, "MAX_CREATIONS_PER_HOUR": 1}
    c = client_for(superuser)
    assert 'id="creation-limit"' not in c.get(ADD).content.decode()
    tenants.create_tenant("org_first1", actor="test")
    page = c.get(ADD).content.decode()
    assert 'id="creation-limit"' in page
    assert "TENANCY[&quot;MAX_CREATIONS_PER_HOUR&quot;] = 1" in page
    assert "TENANCY_MAX_CREATIONS_PER_HOUR" in page and reopen_time(1) in page
    before = snapshot()
    response = c.post(ADD, {"auth0_org_id": "org_second2"})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'class="errornote"' in page and "Too many tenants created in the last hour" in page
    assert "TENANCY[&quot;MAX_CREATIONS_PER_HOUR&quot;]" in page and reopen_time(1) in page
    assert snapshot() == before
