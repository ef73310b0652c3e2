"""Per-role tokens on the real services over HTTP: every route of `ACCESS` refuses the roles it does not list.

A rollout worker's token cannot pull training batches, change η or restore the coordinator; a trainer's
cannot pull prompts or weights; no token or an unknown one is a 401; a known token of the wrong role is a
403 whose sentence names the role, the route and who may call it.
"""

from __future__ import annotations

import pytest
import requests
from workers_builders import CREDENTIALS, TOKENS, auth, tiny_spec

from hexrl.api.jobtokens import TOKEN_ROLES
from hexrl_workers.coordinator.server import ThreadedCoordinator, build_coordinator
from hexrl_workers.httpcommon import ACCESS
from hexrl_workers.weights.server import ThreadedWeightServer, WeightServer, WeightServerSettings
from hexrl_workers.weights.store import pack

pytestmark = pytest.mark.workers


@pytest.fixture(scope="module")
def services():
    import torch

    coord = ThreadedCoordinator(build_coordinator(tiny_spec(), CREDENTIALS))
    weights = ThreadedWeightServer(WeightServer(WeightServerSettings(credentials=CREDENTIALS, origin=True)))
    manifest, blob = pack({"w": torch.zeros(16)}, 0, 1024)
    weights.publish(manifest, blob)
    yield coord, weights
    coord.close()
    weights.close()


def _url(services, route: str) -> str:
    coord, weights = services
    base = weights.url if route.startswith("/v1/weights/") else coord.url
    return base + route.replace("{v}", "0")


def _call(services, method: str, route: str, headers: dict[str, str]) -> requests.Response:
    # bodies are empty on purpose: a refused call never reaches the handler, an allowed one gets a 4xx
    # about its body (or a 200 for a GET), never a 401/403
    return requests.request(method, _url(services, route), headers=headers, timeout=10)


def test_every_route_the_services_serve_under_v1_has_its_roles_in_the_table(services):
    coord, weights = services
    served = set()
    for server in (coord.server, weights.server):
        for route in server.app().router.routes():
            path = route.resource.canonical if route.resource is not None else ""
            if path.startswith("/v1/") and route.method != "HEAD":
                served.add((route.method, path))
    assert served == set(ACCESS), served ^ set(ACCESS)


@pytest.mark.parametrize(("method", "route"), sorted(ACCESS))
def test_each_role_reaches_exactly_the_routes_the_table_gives_it(services, method, route):
    for role in TOKEN_ROLES:
        r = _call(services, method, route, auth(role))
        if role in ACCESS[(method, route)]:
            assert r.status_code not in (401, 403), (role, method, route, r.text)
        else:
            assert r.status_code == 403, (role, method, route, r.text)
            err = r.json()["error"]
            assert f"the {role} token may not call {method} {route}" in err, err
            assert all(a in err for a in ACCESS[(method, route)]), err


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer guess"}, {"Authorization": TOKENS["trainer"]},
                                     {"Authorization": "Basic " + TOKENS["trainer"]}],
                         ids=["none", "unknown", "no-scheme", "basic"])
def test_no_or_an_unknown_token_is_401_everywhere_and_the_probes_stay_open(services, headers):
    for method, route in sorted(ACCESS):
        r = _call(services, method, route, headers)
        assert r.status_code == 401 and r.json()["field"] == "Authorization", (method, route, r.text)
    for base in (s.url for s in services):
        assert requests.get(base + "/healthz", headers=headers, timeout=10).status_code == 200


def test_a_rollout_token_cannot_take_batches_change_eta_or_restore_and_nothing_changes(services):
    """The issue's three abuses, each refused before the handler runs."""
    coord, _ = services
    core = coord.server.core
    before = (core.version, core.s.max_policy_lag, core.buffer_depth)
    rollout = {**auth("rollout"), "Content-Type": "application/json"}
    r = requests.post(coord.url + "/v1/batch", data='{"trainerVersion": 0, "waitSeconds": 0}', headers=rollout,
                      timeout=10)
    assert r.status_code == 403 and "allowed: trainer" in r.json()["error"]
    r = requests.put(coord.url + "/v1/staleness", data='{"maxPolicyLag": 0}', headers=rollout, timeout=10)
    assert r.status_code == 403 and "allowed: operator" in r.json()["error"]
    state = requests.get(coord.url + "/v1/state", headers=auth("trainer"), timeout=10).json()
    r = requests.post(coord.url + "/v1/restore", json={**state, "version": 999}, headers=auth("rollout"), timeout=10)
    assert r.status_code == 403
    assert (core.version, core.s.max_policy_lag, core.buffer_depth) == before
