"""An HTTPS app's certificate in the shared HAProxy (server/proxy_certs.py, https/install.py
with haproxy.shared; docs/apps-design.md, decision 4): written to apps/<app>/site.pem (+
site.source) when the running generation does not list it (the check and the reload load
it), through the runtime API (`set ssl cert` + `commit ssl cert` on the inside path, no
reload) when it does; with ACME a certificate already there is kept."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest

from slotswap.config import layout
from slotswap.config.inventory import Inventory
from slotswap.fleet import certs
from slotswap.https import install as tls
from slotswap.https.files import CertificateBundle, fingerprint, placeholder
from slotswap.server.proxy_certs import place, running_lists_certificate
from tests.unit.fake_server import FakeServer, make_inventory

FILES = {"chain": "c.pem", "key": "k.pem"}
PROXY = "/etc/slotswap/_proxy/haproxy"
APP = f"{PROXY}/apps/webapp"
INSIDE = "/usr/local/etc/haproxy/apps/webapp/site.pem"
SHA = "0123456789ab"


def shared(**https: object) -> Inventory:
    return make_inventory(haproxy={"shared": True},
                          https={"names": ["shop.example"], **(https or {"files": FILES})})


def bundle(source: str = "files") -> CertificateBundle:
    made = placeholder(("shop.example",))
    return CertificateBundle(made.chain_pem, made.key_pem, source)


def serving(first: CertificateBundle) -> Callable[[FakeServer], Callable[[str], str]]:
    """`show ssl cert`: `first`'s serial until a commit, then the committed one's."""
    def answer_for(server: FakeServer) -> Callable[[str], str]:
        def answer(line: str) -> str:
            staged = [sent for sent in server.sent if sent.startswith("set ssl cert")]
            committed = any(sent.startswith("commit ssl cert") for sent in server.sent)
            if committed and staged:
                pem = staged[-1].split("<<\n", 1)[1]
                serial = CertificateBundle(pem, "", "").info().serial
            else:
                serial = first.info().serial
            return f"Filename: {INSIDE}\nSerial: {serial}\n"
        return answer
    return answer_for


def running_server(inventory: Inventory, listed: bool, old: CertificateBundle) -> FakeServer:
    server = FakeServer(inventory=inventory, api={"commit ssl cert": "Success!\n"})
    server.api["show ssl cert"] = serving(old)(server)
    server.files[layout.proxy_running_path(inventory)] = f"{SHA}\n"
    server.files[f"{layout.generation_dir(inventory, SHA)}/{layout.CERTS_LIST_NAME}"] = (
        "/usr/local/etc/haproxy/fallback.pem !*\n" + (f"{INSIDE}\n" if listed else ""))
    server.files[f"{APP}/site.pem"] = old.haproxy_pem()
    return server


def test_the_seam_names_the_app_s_certificate_in_the_shared_haproxy() -> None:
    inventory = shared()
    assert layout.cert_on_server(inventory) == f"{APP}/site.pem"
    assert layout.cert_in_haproxy(inventory) == INSIDE
    assert layout.cert_source_in(layout.haproxy_dir(inventory), inventory) == f"{APP}/site.source"


def test_the_running_generation_lists_the_certificate_only_in_its_crt_list() -> None:
    inventory = shared()
    old = bundle()
    listed = running_server(inventory, True, old)
    assert running_lists_certificate(listed, inventory, running=True)
    assert not running_lists_certificate(listed, inventory, running=False)
    assert not running_lists_certificate(running_server(inventory, False, old), inventory,
                                         running=True)
    assert not running_lists_certificate(FakeServer(inventory=inventory), inventory,
                                         running=True)  # no .running: none ran yet


def test_a_certificate_not_listed_yet_is_written_to_the_app_s_files_only() -> None:
    inventory = shared()
    server = FakeServer(inventory=inventory)
    new = bundle()
    said: list[str] = []
    assert place(server, inventory, new, said.append, listed=False)
    assert server.files[f"{APP}/site.pem"] == new.haproxy_pem()
    assert server.files[f"{APP}/site.source"] == "files\n"
    assert server.sent == []  # the reload or start that follows loads it
    assert "installed" in said[0] and "no reload" not in said[0]
    assert not place(server, inventory, new, said.append, listed=False)  # unchanged


def test_a_listed_certificate_is_replaced_through_the_runtime_api_with_no_reload() -> None:
    inventory = shared()
    old, new = bundle(), bundle()
    server = running_server(inventory, True, old)
    said: list[str] = []
    assert place(server, inventory, new, said.append, listed=True)
    assert server.sent[0].startswith(f"set ssl cert {INSIDE} <<\n")
    assert server.sent[1] == f"commit ssl cert {INSIDE}"
    assert len(server.sent) == 2
    assert server.files[f"{APP}/site.pem"] == new.haproxy_pem()
    assert said[0].endswith("installed with no reload")


def test_with_acme_a_certificate_already_there_is_kept_and_a_missing_one_gets_the_stand_in(
        ) -> None:
    inventory = shared(acme={})
    issued = bundle("acme https://ca.example/dir")
    stand_in = certs.material_for_up(inventory)
    assert stand_in is not None and stand_in.info().names == ("shop.example",)
    server = FakeServer(inventory=inventory)
    server.files[f"{APP}/site.pem"] = issued.haproxy_pem()
    assert not place(server, inventory, stand_in, lambda line: None, listed=True)
    assert fingerprint(server.files[f"{APP}/site.pem"]) == fingerprint(issued.haproxy_pem())
    assert server.sent == []
    empty = FakeServer(inventory=inventory)
    assert place(empty, inventory, stand_in, lambda line: None, listed=False)
    assert empty.files[f"{APP}/site.pem"] == stand_in.haproxy_pem()


def test_an_app_without_https_has_no_certificate_placed() -> None:
    inventory = make_inventory(haproxy={"shared": True}, names=["shop.example"])
    server = FakeServer(inventory=inventory)
    assert not place(server, inventory, None, lambda line: None, listed=True)
    assert server.files == {} and server.sent == []


def test_tls_install_uses_the_seam_s_paths_for_a_shared_inventory() -> None:
    inventory = shared()
    old, new = bundle(), bundle()
    server = running_server(inventory, True, old)
    assert tls.install(server, inventory, layout.haproxy_dir(inventory), new,
                       lambda line: None, running=True)
    assert [line.split(" <<")[0] for line in server.sent] == [
        f"set ssl cert {INSIDE}", f"commit ssl cert {INSIDE}"]
    assert set(server.files) >= {f"{APP}/site.pem", f"{APP}/site.source"}
    assert not any(path.endswith("/certs/site.pem") for path in server.files)


# HAProxy 2.6's answers, from the local HAProxy: one transaction at a time for every file,
# and a `set ssl cert` of another file while it is open goes into it.
LISTING_WITH_OTHER = ("# transaction\n*/usr/local/etc/haproxy/apps/admin/site.pem\n"
                      "# filename\n/usr/local/etc/haproxy/apps/admin/site.pem\n" f"{INSIDE}\n")
OTHER = "/usr/local/etc/haproxy/apps/admin/site.pem"


def test_a_certificate_change_another_run_left_open_is_aborted_first() -> None:
    """Every install on a shared HAProxy holds its lock: an open transaction of another app's
    file is a run's that stopped between `set` and `commit`, and would refuse every other
    app's install until that app's next run."""
    inventory = shared()
    old, new = bundle(), bundle()
    server = running_server(inventory, True, old)
    served = server.api["show ssl cert"]
    server.api["show ssl cert"] = lambda line: (
        LISTING_WITH_OTHER if line == "show ssl cert" else served(line))  # type: ignore[operator]
    with contextlib.suppress(tls.TlsError):  # what follows the abort is the other tests'
        place(server, inventory, new, lambda line: None, listed=True)
    assert server.sent[0] == f"abort ssl cert {OTHER}"


def test_an_open_change_that_is_no_apps_certificate_is_never_sent_back() -> None:
    inventory = shared()
    server = running_server(inventory, True, bundle())
    served = server.api["show ssl cert"]
    odd = "/etc/x.pem; clear map /y"
    server.api["show ssl cert"] = lambda line: (
        f"# transaction\n*{odd}\n" if line == "show ssl cert" else served(line))  # type: ignore[operator]
    with pytest.raises(tls.TlsError, match="which is not an app's; nothing was changed"):
        place(server, inventory, bundle(), lambda line: None, listed=True)
    assert server.sent == []


def test_a_set_that_landed_in_another_app_s_transaction_aborts_it_and_changes_nothing(
        ) -> None:
    inventory = shared()
    old, new = bundle(), bundle()
    server = running_server(inventory, True, old)
    server.api["set ssl cert"] = f"Transaction updated for certificate {OTHER}!\n"
    with pytest.raises(tls.TlsError, match="was not changed; run again"):
        place(server, inventory, new, lambda line: None, listed=True)
    assert server.sent[-1] == f"abort ssl cert {OTHER}"
    assert not any(line.startswith("commit") for line in server.sent)
    assert server.files[f"{APP}/site.pem"] == old.haproxy_pem()


def test_the_open_transaction_is_read_from_show_ssl_cert() -> None:
    assert tls.open_transaction(LISTING_WITH_OTHER) == OTHER
    assert tls.open_transaction(f"# filename\n{INSIDE}\n") is None
    assert tls.transaction_of(f"Transaction created for certificate {INSIDE}!\n") == INSIDE
    assert tls.transaction_of("\n") is None
