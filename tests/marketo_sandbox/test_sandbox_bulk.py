"""Bulk import and usage stats (docs/reference/marketo-api.md §9, §2.1)."""

from __future__ import annotations

from marketo_sandbox.testing import SandboxHandle


async def _upload(api, path: str, csv: str, **params: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    r = await api.http.post(path, headers=api.headers(), params=params,
                            files={"file": ("data.csv", csv.encode(), "text/csv")})
    assert r.status_code == 200, r.text
    body: dict = r.json()  # type: ignore[type-arg]
    return body


async def test_lead_import_lifecycle_counters_and_files(api) -> None:  # type: ignore[no-untyped-def]
    sb: SandboxHandle = api.sb
    sb.set_limits({"import_seconds_base": 10, "import_seconds_per_row": 0, "import_queue_seconds": 1})
    await api.post("/rest/v1/leads.json", json={"input": [{"email": "old@x.com", "firstName": "Old"}]})
    csv = "email,firstName,leadScore\nold@x.com,New,1\nnew@x.com,N,2\n,NoEmail,3\nbad-email,B,4\nz@x.com,Z,abc\n"
    body = await _upload(api, "/bulk/v1/leads.json", csv, format="CSV")
    assert body["success"] is True
    (job,) = body["result"]
    assert job == {"batchId": job["batchId"], "importId": str(job["batchId"]), "status": "Queued"}
    status_path = f"/bulk/v1/leads/batch/{job['batchId']}.json"
    assert (await api.get(status_path))["result"][0]["status"] == "Queued"
    sb.advance(1)
    assert (await api.get(status_path))["result"][0]["status"] == "Importing"
    sb.advance(9.5)
    assert (await api.get(status_path))["result"][0]["status"] == "Importing"
    assert len(sb.dump()["leads"]) == 1  # nothing applied until the job completes
    sb.advance(0.5)
    st = (await api.get(status_path))["result"][0]
    assert st == {"batchId": job["batchId"], "importId": str(job["batchId"]), "status": "Complete",
                  "numOfLeadsProcessed": 3, "numOfRowsFailed": 2, "numOfRowsWithWarning": 1,
                  "message": "Import completed with errors, 3 records imported (3 members), 2 failed"}
    leads = {ld["email"]: ld for ld in sb.dump()["leads"]}
    assert leads["old@x.com"]["firstName"] == "New" and "new@x.com" in leads and "bad-email" in leads
    r = await api.http.get(f"/bulk/v1/leads/batch/{job['batchId']}/failures.json", headers=api.headers())
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.text.splitlines() == [
        "email,firstName,leadScore,Import Failure Reason",
        ",NoEmail,3,Value for lookup field 'email' not found",
        "z@x.com,Z,abc,Invalid value 'abc'. Required of type 'integer'",
    ]
    r = await api.http.get(f"/bulk/v1/leads/batch/{job['batchId']}/warnings.json", headers=api.headers())
    assert r.text.splitlines() == ["email,firstName,leadScore,Import Warning Reason",
                                   "bad-email,B,4,Invalid email address"]


async def test_no_failures_file_is_404_and_empty_file_is_1003(api) -> None:  # type: ignore[no-untyped-def]
    sb: SandboxHandle = api.sb
    body = await _upload(api, "/bulk/v1/leads.json", "email\na@x.com\n")
    bid = body["result"][0]["batchId"]
    sb.advance(60)
    st = (await api.get(f"/bulk/v1/leads/batch/{bid}.json"))["result"][0]
    assert st["message"] == "Import succeeded, 1 records imported (1 members)"
    r = await api.http.get(f"/bulk/v1/leads/batch/{bid}/failures.json", headers=api.headers())
    assert r.status_code == 404
    assert api.error_of(await _upload(api, "/bulk/v1/leads.json", "")) == ("1003", "Empty File")


async def test_queue_two_running_ten_queued_then_1016(api) -> None:  # type: ignore[no-untyped-def]
    sb: SandboxHandle = api.sb
    sb.set_limits({"import_seconds_base": 10, "import_seconds_per_row": 0, "import_queue_seconds": 0})
    ids = []
    for i in range(10):
        body = await _upload(api, "/bulk/v1/leads.json", f"email\nq{i}@x.com\n")
        assert body["success"] is True, i
        ids.append(body["result"][0]["batchId"])
    assert api.error_of(await _upload(api, "/bulk/v1/leads.json", "email\nq@x.com\n")) == ("1016", "Too many imports")

    async def statuses() -> list[str]:
        return [(await api.get(f"/bulk/v1/leads/batch/{b}.json"))["result"][0]["status"] for b in ids]

    assert (await statuses()).count("Importing") == 2
    sb.advance(10)  # the first two finish, the next two start
    st = await statuses()
    assert st[:2] == ["Complete", "Complete"] and st[2:4] == ["Importing", "Importing"]
    assert (await _upload(api, "/bulk/v1/leads.json", "email\nq10@x.com\n"))["success"] is True
    sb.advance(100)
    assert set(await statuses()) == {"Complete"}


async def test_custom_object_and_program_member_imports(api) -> None:  # type: ignore[no-untyped-def]
    sb: SandboxHandle = api.sb
    await api.post("/rest/v1/leads.json", json={"input": [{"email": "a@x.com"}]})
    body = await _upload(api, "/bulk/v1/customobjects/kalturaUserPolls_c/import.json",
                         "entry_id,email,poll_1_answer\n1_a,a@x.com,Yes\n1_a,,No\n", format="csv")
    (job,) = body["result"]
    assert set(job) == {"batchId", "status", "objectApiName"} and job["objectApiName"] == "kalturaUserPolls_c"
    sb.advance(60)
    st = (await api.get(f"/bulk/v1/customobjects/kalturaUserPolls_c/import/{job['batchId']}/status.json"))
    s = st["result"][0]
    assert s["operation"] == "import" and s["status"] == "Complete" and s["numOfObjectsProcessed"] == 1
    assert s["numOfRowsFailed"] == 1 and s["importTime"].endswith("second(s)")
    r = await api.http.get(f"/bulk/v1/customobjects/kalturaUserPolls_c/import/{job['batchId']}/failures.json",
                           headers=api.headers())
    assert r.text.splitlines()[1] == "1_a,,No,missing.dedupe.fields"
    assert sb.dump()["customObjects"]["kalturaUserPolls_c"][0]["poll_1_answer"] == "Yes"
    # program members: status from a multipart field, email is the key
    r = await api.http.post("/bulk/v1/program/1001/members/import.json", headers=api.headers(),
                            data={"format": "csv", "programMemberStatus": "Registered"},
                            files={"file": ("pm.csv", b"email,firstName\na@x.com,A\nb@x.com,B\n")})
    (job,) = r.json()["result"]
    sb.advance(60)
    s = (await api.get(f"/bulk/v1/program/members/import/{job['batchId']}/status.json"))["result"][0]
    assert s["status"] == "Complete" and s["numOfLeadsProcessed"] == 2
    members = sb.dump()["programMembers"]
    assert sorted(m["statusName"] for m in members) == ["Registered", "Registered"]
    body = await _upload(api, "/bulk/v1/program/1001/members/import.json", "email\na@x.com\n",
                         programMemberStatus="Nope")
    assert api.error_of(body) == ("1025", "Program status not found")


async def test_usage_stats(api) -> None:  # type: ignore[no-untyped-def]
    await api.get("/rest/v1/leads/describe.json")
    await api.get("/rest/v1/nothing.json")
    usage = (await api.get("/rest/v1/stats/usage.json"))["result"]
    assert usage == [{"date": "2026-03-04", "total": 2, "users": [{"userId": "apiuser@sandbox.example",
                                                                   "count": 2}]}]
    errors = (await api.get("/rest/v1/stats/errors.json"))["result"]
    assert errors == [{"date": "2026-03-04", "total": 1, "errors": [{"errorCode": "610", "count": 1}]}]
    week = (await api.get("/rest/v1/stats/usage/last7days.json"))["result"]
    assert len(week) == 7 and week[0]["total"] == 4  # the two usage calls count too


async def test_unknown_column_fails_the_job_and_tsv_format(api) -> None:  # type: ignore[no-untyped-def]
    sb: SandboxHandle = api.sb
    body = await _upload(api, "/bulk/v1/leads.json", "email,shoeSize\na@x.com,9\n")
    bid = body["result"][0]["batchId"]
    sb.advance(60)
    st = (await api.get(f"/bulk/v1/leads/batch/{bid}.json"))["result"][0]
    assert st["status"] == "Failed" and st["message"] == "Field 'shoeSize' not found"
    assert sb.dump()["leads"] == []
    body = await _upload(api, "/bulk/v1/leads.json", "email\tfirstName\nt@x.com\tTab\n", format="tsv")
    bid = body["result"][0]["batchId"]
    sb.advance(60)
    assert (await api.get(f"/bulk/v1/leads/batch/{bid}.json"))["result"][0]["status"] == "Complete"
    assert sb.dump()["leads"][0]["firstName"] == "Tab"
    bogus = await api.get("/bulk/v1/leads/batch/999.json")
    assert api.error_of(bogus)[0] == "1003"
    sb.advance(8 * 24 * 3600)  # batch ids expire after 7 days
    await api.login()
    assert api.error_of(await api.get(f"/bulk/v1/leads/batch/{bid}.json"))[0] == "1003"


async def test_member_import_fails_rows_without_a_lead_and_imports_the_rest(api) -> None:  # type: ignore[no-untyped-def]
    sb: SandboxHandle = api.sb
    body = await _upload(api, "/bulk/v1/program/1001/members/import.json",
                         "email,firstName\na@x.com,A\n,NoEmail\nc@x.com\n", programMemberStatus="Registered")
    bid = body["result"][0]["batchId"]
    sb.advance(60)
    s = (await api.get(f"/bulk/v1/program/members/import/{bid}/status.json"))["result"][0]
    assert s["status"] == "Complete" and s["numOfLeadsProcessed"] == 1 and s["numOfRowsFailed"] == 2
    r = await api.http.get(f"/bulk/v1/program/members/import/{bid}/failures.json", headers=api.headers())
    assert r.text.splitlines() == [
        "email,firstName,Import Failure Reason",
        ",NoEmail,Value for lookup field 'email' not found",
        "c@x.com,Invalid number of columns",
    ]
    assert [m["statusName"] for m in sb.dump()["programMembers"]] == ["Registered"]
    assert [ld["email"] for ld in sb.dump()["leads"]] == ["a@x.com"]
