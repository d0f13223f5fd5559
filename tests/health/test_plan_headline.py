"""`tenantctl plan` against the sandbox: a tenant whose provider could not be observed never reads "no changes"."""

from __future__ import annotations

import json

from tests.health.conftest import Rehearsal

DOWN = json.dumps({"rate": 1.0, "kinds": ["500"], "providers": ["hospitable"]})


def test_the_tenant_headline_says_how_many_providers_could_not_be_observed(rehearsal: Rehearsal) -> None:
    r = rehearsal.run("--no-color", "plan", "--sandbox", "-t", "casa-sol", "-p", "hospitable",
                      env={"TENANTCTL_SANDBOX_FAULTS": DOWN})
    headline = next(line for line in r.out.splitlines() if line.startswith("tenant casa-sol"))
    assert headline == "tenant casa-sol: 1 provider(s) could not be observed", r.all
    assert "no changes" not in headline


def test_the_markdown_summary_of_a_tenant_with_changes_counts_the_unobserved_too(rehearsal: Rehearsal) -> None:
    down = json.dumps({"rate": 1.0, "kinds": ["500"], "providers": ["hospitable"]})
    r = rehearsal.run("plan", "--sandbox", "-t", "acme", "--format", "markdown",
                      env={"TENANTCTL_SANDBOX_FAULTS": down})
    summary = next(line for line in r.out.splitlines() if line.startswith("<details><summary><code>acme"))
    assert "; 1 provider(s) could not be observed" in summary, r.all
