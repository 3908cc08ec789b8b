"""Build the course site's solutions edition, and publish either edition to the course's gh-pages branch.

    python book/_ext/editions.py build --edition solutions    # _build/solutions/html (make site-solutions)
    python book/_ext/editions.py publish --edition student    # _build/html -> gh-pages (make publish)
    python book/_ext/editions.py publish --edition solutions  # after the deadline (make publish-solutions)

The student edition is what `make site` builds (`jupyter-book build .`, into _build/html). The solutions
edition is the same book with ``course_edition = "solutions"``, built into _build/solutions/html through the
same execution cache (_build/.jupyter_cache), so after `make site` it costs the rendering only.

Publishing pushes a built site, as it is, to ``repository.branch`` (gh-pages) of ``repository.url`` in
_config.yml (ghp-import, with a .nojekyll file), on top of that branch's history, so that a student's clone of
it (JupyterHub's git-pull) keeps pulling. It refuses a site whose EDITION file does not name the edition asked
for, and a branch that is the course's own source branch.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
EDITIONS = ("student", "solutions")
#: where each edition is built, relative to the book's root
SITE_DIRS = {"student": Path("_build/html"), "solutions": Path("_build/solutions/html")}
#: a remote-tracking ref of our own for the published branch, so ghp-import builds on its history
TRACKING = "course-publish"
#: the values _config.yml ships with until the course has a home: a site built with them links nowhere
PLACEHOLDERS = {"repository.url": "https://github.com/cnn-tricks/cnn-tricks",
                "launch_buttons.jupyterhub_url": "https://jupyterhub.example.edu"}


def site_config(root: Path = ROOT) -> dict:
    """The publishing settings of _config.yml: repository url, branch and path_to_book."""
    config = yaml.safe_load((root / "_config.yml").read_text()) or {}
    repo = config.get("repository") or {}
    launch = config.get("launch_buttons") or {}
    return {"url": repo.get("url", ""), "branch": repo.get("branch", "gh-pages"),
            "path_to_book": repo.get("path_to_book", ""),
            "placeholders": [key for key, value in PLACEHOLDERS.items()
                             if (repo if key.startswith("repository.") else launch).get(key.split(".")[1], "")
                             .rstrip("/") == value]}


def build(edition: str, root: Path = ROOT, *, log=None) -> int:
    """Build ``edition`` of the book as `make site` does (warnings are errors); returns Sphinx's status."""
    if edition not in EDITIONS:
        raise ValueError(f"edition: expected one of {EDITIONS}, got {edition!r}")
    from jupyter_book.cli.main import build as jb_build
    from jupyter_book.sphinx import build_sphinx

    root = Path(root).resolve()
    # jupyter-book's own reading of _config.yml and _toc.yml, without building
    path_config, source, overrides = jb_build.callback(
        path_source=str(root), path_output=None, config=None, toc=None, warningiserror=True, nitpick=False,
        keep_going=True, freshenv=False, builder="html", custom_builder=None, verbose=0, quiet=0,
        individualpages=False, get_config_only=True)
    overrides = dict(overrides, course_edition=edition,
                     # one cache for both editions: the second build renders, it does not execute
                     nb_execution_cache_path=str(root / "_build" / ".jupyter_cache"))
    outdir = root / SITE_DIRS[edition]
    status = build_sphinx(source, outdir, noconfig=True, path_config=str(path_config),
                          confoverrides=overrides, warningiserror=True, keep_going=True)
    if status == 0:
        print(f"the {edition} edition is in {outdir}/index.html")
    return status


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}:\n{proc.stderr.strip()}")
    return proc


def publish(edition: str, *, root: Path = ROOT, site: Path | None = None, repo: Path | None = None,
            remote: str | None = None, branch: str | None = None, message: str | None = None,
            push: bool = True, allow_placeholders: bool = False) -> str:
    """Commit the built ``edition`` onto ``branch`` (ghp-import), push it to ``remote``; returns the commit.

    ``site`` defaults to where the edition is built, ``repo`` (the git repository that makes the commit) to
    the book's root, ``remote`` (a URL or a path) to ``repository.url`` and ``branch`` to
    ``repository.branch`` of _config.yml: the launch buttons were built from the same two, so they open
    what is pushed here. A site whose links still use _config.yml's placeholders is refused unless
    ``allow_placeholders`` (a rehearsal against a local repository).
    """
    if edition not in EDITIONS:
        raise ValueError(f"edition: expected one of {EDITIONS}, got {edition!r}")
    root = Path(root).resolve()
    config = site_config(root)
    site = Path(site) if site is not None else root / SITE_DIRS[edition]
    repo = Path(repo) if repo is not None else root
    remote = remote or config["url"]
    branch = branch or config["branch"]
    if config["placeholders"] and not allow_placeholders:
        raise ValueError(f"_config.yml: {', '.join(config['placeholders'])} still hold the placeholders; set "
                         "the course's public repository and hub there (the launch buttons are built from "
                         "them), rebuild the site, then publish")
    if not remote:
        raise ValueError("remote: set repository.url in _config.yml or pass --remote")
    if not branch:
        raise ValueError("branch: set repository.branch in _config.yml or pass --branch")
    current = _git(repo, "rev-parse", "--abbrev-ref", "HEAD", check=False).stdout.strip()
    if branch in ("main", "master", current):
        raise ValueError(f"branch: {branch!r} is a source branch; publish to a branch of its own (gh-pages)")
    marker = site / "EDITION"
    if not (site / "index.html").is_file():
        raise ValueError(f"site: no built site in {site} (build it: `make site` or `make site-solutions`)")
    found = marker.read_text().strip() if marker.is_file() else None
    if found != edition:
        raise ValueError(f"site: {site} holds the {found or 'unmarked (unchecked or unfinished)'} edition, "
                         f"not the {edition} edition asked for; rebuild it")

    # build on the published branch's history (a fast-forward push; students' clones keep pulling); a
    # remote without the branch yet gets the local one's history, if there is a local one
    tracking = f"refs/remotes/{TRACKING}/{branch}"
    heads = _git(repo, "ls-remote", "--heads", remote, branch).stdout
    if heads.strip():
        _git(repo, "fetch", "--quiet", remote, f"+refs/heads/{branch}:{tracking}")
    else:
        _git(repo, "update-ref", "-d", tracking, check=False)
    message = message or f"Publish the {edition} edition of the course site"
    ghp = Path(sys.executable).with_name("ghp-import")
    cmd = [str(ghp) if ghp.exists() else "ghp-import", "--no-jekyll", "--remote", TRACKING,
           "--branch", branch, "--message", message, str(site.resolve())]
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ghp-import failed:\n{proc.stdout}{proc.stderr}")
    commit = _git(repo, "rev-parse", f"refs/heads/{branch}").stdout.strip()
    if push:
        _git(repo, "push", "--quiet", remote, f"refs/heads/{branch}:refs/heads/{branch}")
    return commit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build an edition of the site (the student edition is `make site`)")
    b.add_argument("--edition", choices=EDITIONS, default="solutions")
    p = sub.add_parser("publish", help="push a built edition to the course's gh-pages branch")
    p.add_argument("--edition", choices=EDITIONS, required=True)
    p.add_argument("--remote", help="URL or path to push to (default: repository.url of _config.yml)")
    p.add_argument("--branch", help="branch to publish to (default: repository.branch of _config.yml)")
    p.add_argument("--message", help="the commit message")
    p.add_argument("--no-push", action="store_true", help="make the commit on the local branch only")
    p.add_argument("--allow-placeholders", action="store_true",
                   help="publish even though _config.yml still has its placeholder links (a rehearsal)")
    args = parser.parse_args(argv)
    if args.command == "build":
        return build(args.edition)
    try:
        commit = publish(args.edition, remote=args.remote, branch=args.branch, message=args.message,
                         push=not args.no_push, allow_placeholders=args.allow_placeholders)
    except (ValueError, RuntimeError) as error:
        print(f"publish: {error}", file=sys.stderr)
        return 2
    config = site_config()
    print(f"published the {args.edition} edition as {commit[:12]} on {args.branch or config['branch']}"
          f"{'' if args.no_push else ' of ' + (args.remote or config['url'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
