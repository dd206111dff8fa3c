"""Render the dashboard bundle (dashboards/bundle/), import it into Superset, apply access.yaml.

The YAML in git names the serving files and Superset's own address by placeholders, because they
depend on where the repository is checked out and which port Superset serves. This module fills
them in and imports the result with Superset's asset importer, which matches every object by its
fixed UUID and overwrites it: provisioning twice leaves the same databases, datasets, charts and
dashboards. Then it applies dashboards/access.yaml (roles, users with generated passwords, row-level
security), also idempotently.

Run it through `scripts/superset.sh provision`, which sets SUPERSET_CONFIG_PATH, the secret key
and the metadata URL and uses .venv-superset's Python. Rendering alone needs only the standard
library and PyYAML, so tests can check the bundle without Superset:

    python dashboards/provision.py --serving-file var/serving/city.duckdb --zip var/x.zip --render-only
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import zipfile
from pathlib import Path

import yaml

DASHBOARDS_DIR = Path(__file__).resolve().parent
BUNDLE_DIR = DASHBOARDS_DIR / "bundle"
ACCESS_FILE = DASHBOARDS_DIR / "access.yaml"
CITY_FILE = DASHBOARDS_DIR.parent / "conf" / "city.yaml"
SERVING_FILE_PLACEHOLDER = "__CITYLAKE_SERVING_FILE__"
RESTRICTED_FILE_PLACEHOLDER = "__CITYLAKE_RESTRICTED_FILE__"
# deck.gl asks a tile server for its base map; Superset itself serves blank tiles (see
# superset_config.py), so the map works offline and the CSP needs no outside host.
SUPERSET_URL_PLACEHOLDER = "__CITYLAKE_SUPERSET_URL__"
MASKED_DATABASE_UUID = "0350e6ad-f213-47b4-9532-ebc33f45f38a"
RESTRICTED_DATABASE_UUID = "9b4e2f8a-5d1c-4e0b-8f3a-2c7d6e1b9a40"
# Superset expects every file of an export inside one top-level folder of the zip.
ZIP_ROOT = "citylake_dashboards"


def default_restricted_file(serving_file: Path) -> Path:
    """Where pipelines/publish.py puts the clear copy, beside the serving file."""
    return serving_file.parent / "restricted" / "city_clear.duckdb"


def render_contents(
    serving_file: Path,
    restricted_file: Path | None = None,
    superset_url: str = "http://127.0.0.1:8088",
    bundle_dir: Path = BUNDLE_DIR,
) -> dict[str, str]:
    """Every bundle file (path inside the bundle → text) with the placeholders filled in."""
    restricted_file = restricted_file or default_restricted_file(serving_file)
    paths = sorted(p for p in bundle_dir.rglob("*.yaml") if p.is_file())
    if not any(p.name == "metadata.yaml" for p in paths):
        raise FileNotFoundError(f"{bundle_dir}: no metadata.yaml; is this a Superset bundle?")
    replacements = {
        SERVING_FILE_PLACEHOLDER: serving_file.resolve().as_posix(),
        RESTRICTED_FILE_PLACEHOLDER: restricted_file.resolve().as_posix(),
        SUPERSET_URL_PLACEHOLDER: superset_url.rstrip("/"),
    }
    gold = _gold_tables()
    contents = {}
    for path in paths:
        text = path.read_text(encoding="utf-8")
        for placeholder, value in replacements.items():
            text = text.replace(placeholder, value)
        if path.parent.parent.name == "datasets" and path.stem in gold:
            text = _described(text, gold[path.stem])
        contents[path.relative_to(bundle_dir).as_posix()] = text
    return contents


def _gold_tables() -> dict:
    """The gold tables of the catalogue (citylake.catalogue, importable from Superset's Python
    too: it needs only pydantic and PyYAML)."""
    if str(DASHBOARDS_DIR.parent) not in sys.path:
        sys.path.insert(0, str(DASHBOARDS_DIR.parent))
    from citylake import catalogue

    return {t.name: t for t in catalogue.GOLD_TABLES}


def _described(text: str, table) -> str:
    """A gold table's dataset with the table's and each column's type and description from its
    metadata file: the bundle keeps labels and metrics; the catalogue says what a column is."""
    from citylake.catalogue import serving_columns

    data = yaml.safe_load(text)
    meta = table.meta.description
    data["description"] = f"{meta.zh}（个人信息已脱敏）{meta.en} (personal data masked)"
    served = serving_columns(table)
    for column in data["columns"]:
        if column["column_name"] in served:  # computed columns (an expression) keep their own
            column["type"], column["description"] = served[column["column_name"]]
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=1000)


def render_bundle(
    serving_file: Path,
    zip_path: Path,
    bundle_dir: Path = BUNDLE_DIR,
    restricted_file: Path | None = None,
    superset_url: str = "http://127.0.0.1:8088",
) -> Path:
    """Write the rendered bundle into zip_path (the layout `superset import-dashboards` reads)."""
    contents = render_contents(serving_file, restricted_file, superset_url, bundle_dir)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target, then renamed: an interrupted run never leaves half a zip.
    partial = zip_path.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, text in contents.items():
            bundle.writestr(f"{ZIP_ROOT}/{name}", text)
    os.replace(partial, zip_path)
    return zip_path


def division_codes(city_file: Path = CITY_FILE) -> list[str]:
    city = yaml.safe_load(city_file.read_text(encoding="utf-8"))
    return [str(d["code"]) for d in city["divisions"]]


def planned_access(access_file: Path = ACCESS_FILE, city_file: Path = CITY_FILE) -> dict:
    """access.yaml with the per-division roles and users expanded (pure; tests read it)."""
    spec = yaml.safe_load(access_file.read_text(encoding="utf-8"))
    codes = division_codes(city_file)
    roles, users = {}, {}
    for name, role in spec["roles"].items():
        if role.get("per_division"):
            for code in codes:
                expanded = {**role, "division_code": code, "label": f"{role['label']} {code}"}
                rls = role.get("row_level_security")
                if rls:
                    expanded["row_level_security"] = {
                        **rls,
                        "clause": rls["clause"].format(division_code=code),
                    }
                roles[f"{name}_{code}"] = expanded
        else:
            roles[name] = role
    for name, user in spec["users"].items():
        if user.get("per_division"):
            for code in codes:
                users[f"{name}_{code}"] = {
                    **user,
                    "role": f"{user['role']}_{code}",
                    "last_name": f"{user['last_name']} {code}",
                }
        else:
            users[name] = user
    unknown = {u["role"] for u in users.values()} - set(roles)
    if unknown:
        raise ValueError(f"{access_file}: users name roles that are not defined: {sorted(unknown)}")
    return {"roles": roles, "users": users, "audit_datasets": spec.get("audit_datasets", [])}


def read_or_create_password(secrets_dir: Path, username: str) -> tuple[str, bool]:
    """The user's password from <secrets>/superset_<user>_password, generated if missing."""
    path = secrets_dir / f"superset_{username}_password"
    if path.exists() and path.read_text().strip():
        return path.read_text().strip(), False
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_suffix(".partial")
    partial.write_text(secrets.token_urlsafe(18))
    partial.chmod(0o600)
    os.replace(partial, path)
    return path.read_text().strip(), True


# ----------------------------------------------------------------------------- inside Superset


def import_into_superset(contents: dict[str, str], username: str, secrets_dir: Path) -> dict:
    """Import the rendered bundle and apply access.yaml in one Superset app context."""
    from flask import g
    from superset.app import create_app

    app = create_app()
    with app.app_context(), app.test_request_context():
        from superset import db, security_manager
        from superset.commands.importers.v1.assets import ImportAssetsCommand

        owner = security_manager.find_user(username)
        if owner is None:
            raise SystemExit(f"no Superset user '{username}'; run scripts/superset.sh init first")
        g.user = owner
        ImportAssetsCommand(contents).run()
        summary = apply_access(planned_access(), secrets_dir)
        db.session.commit()
    return summary


def apply_access(plan: dict, secrets_dir: Path) -> dict:
    from superset import db, security_manager
    from superset.connectors.sqla.models import RowLevelSecurityFilter, SqlaTable
    from superset.models.core import Database
    from superset.utils.core import RowLevelSecurityFilterType

    databases = {
        "masked": db.session.query(Database).filter_by(uuid=MASKED_DATABASE_UUID).one(),
        "restricted": db.session.query(Database).filter_by(uuid=RESTRICTED_DATABASE_UUID).one(),
    }
    masked_datasets = (
        db.session.query(SqlaTable).filter_by(database_id=databases["masked"].id).all()
    )
    if missing := set(plan["audit_datasets"]) - {d.table_name for d in masked_datasets}:
        raise SystemExit(f"access.yaml: audit_datasets {sorted(missing)} are not in the bundle")
    summary: dict = {"roles": {}, "users": {}}
    for name, spec in plan["roles"].items():
        role = security_manager.find_role(name) or security_manager.add_role(name)
        wanted = []
        for database in spec.get("databases", []):
            wanted.append(("database_access", databases[database].perm))
        if spec.get("datasets") == "masked":
            wanted += [
                ("datasource_access", d.perm)
                for d in masked_datasets
                if spec.get("audit") or d.table_name not in plan["audit_datasets"]
            ]
        # The role is exactly what access.yaml says: stale grants are dropped.
        role.permissions = [
            security_manager.add_permission_view_menu(permission, view)
            for permission, view in wanted
        ]
        rls = spec.get("row_level_security")
        if rls:
            tables = [
                d for d in masked_datasets if rls["column"] in {c.column_name for c in d.columns}
            ]
            rule_name = f"{name}: {rls['clause']}"
            rule = (
                db.session.query(RowLevelSecurityFilter)
                .filter(RowLevelSecurityFilter.name.like(f"{name}:%"))
                .one_or_none()
            ) or RowLevelSecurityFilter()
            rule.name = rule_name
            rule.description = f"{spec['label']}: only the rows of division {spec['division_code']}"
            rule.filter_type = RowLevelSecurityFilterType.REGULAR.value
            rule.clause = rls["clause"]
            rule.group_key = None
            rule.roles = [role]
            rule.tables = tables
            db.session.add(rule)
        summary["roles"][name] = len(wanted)
    db.session.flush()

    for username, spec in plan["users"].items():
        role_names = [*plan["roles"][spec["role"]].get("builtin", []), spec["role"]]
        roles = [security_manager.find_role(r) for r in role_names]
        if None in roles:
            raise SystemExit(f"user {username}: a role of {role_names} does not exist")
        password, created = read_or_create_password(secrets_dir, username)
        user = security_manager.find_user(username)
        if user is None:
            user = security_manager.add_user(
                username,
                spec["first_name"],
                spec["last_name"],
                f"{username}@citylake.invalid",
                roles,
                password=password,
            )
            if not user:
                raise SystemExit(f"could not create Superset user {username}")
        else:
            user.roles = roles
            if created:  # the secret was lost: the new one must work
                security_manager.reset_password(user.id, password)
        summary["users"][username] = role_names
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serving-file", type=Path, required=True)
    parser.add_argument("--restricted-file", type=Path, default=None)
    parser.add_argument("--superset-url", default="http://127.0.0.1:8088")
    parser.add_argument("--zip", type=Path, required=True, help="where to write the bundle zip")
    parser.add_argument("--secrets-dir", type=Path, default=None)
    parser.add_argument("--username", default="admin", help="owner of the imported objects")
    parser.add_argument("--render-only", action="store_true", help="write the zip, do not import")
    args = parser.parse_args(argv)

    if not args.serving_file.exists():
        # Importing works without it, but Superset cannot check the tables and charts fail.
        print(
            f"warning: {args.serving_file} does not exist yet; charts will fail until the "
            "pipeline publishes it",
            file=sys.stderr,
        )
    zip_path = render_bundle(
        args.serving_file,
        args.zip,
        restricted_file=args.restricted_file,
        superset_url=args.superset_url,
    )
    print(f"rendered {zip_path}")
    if args.render_only:
        return
    if args.secrets_dir is None:
        raise SystemExit("--secrets-dir is needed to import (users' passwords are kept there)")
    contents = render_contents(args.serving_file, args.restricted_file, args.superset_url)
    summary = import_into_superset(contents, args.username, args.secrets_dir)
    print(f"imported {len(contents)} files as {args.username}")
    for username, roles in summary["users"].items():
        print(f"user {username}: roles {', '.join(roles)}")


if __name__ == "__main__":
    main()
