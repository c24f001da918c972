"""The scenario's registrants fill a registration form (issue #16 §3): title, company, country and three
custom questions, some left blank; profiles carry the answers under their profileData keys, the user
carries title/company/country, and the ground truth says what each registrant gave."""

from __future__ import annotations

from kaltura_sandbox.config import ScenarioConfig
from kaltura_sandbox.scenario import BLANK_COMPANY, BLANK_TITLE, REGISTRATION_FORM, generate
from kaltura_sandbox.state import ScenarioView


def test_a_realistic_share_answers_and_blank_questions_are_not_stored() -> None:
    scenario = generate(ScenarioConfig(registrants=1000), seed=5)
    people = scenario.registrants
    blank_title = sum(1 for r in people if not r.title) / len(people)
    blank_company = sum(1 for r in people if not r.company) / len(people)
    assert abs(blank_title - BLANK_TITLE) < 0.05 and abs(blank_company - BLANK_COMPANY) < 0.05
    for key, answers in REGISTRATION_FORM.items():
        given = [r.form[key] for r in people if key in r.form]
        assert 0.65 < len(given) / len(people) < 0.85, key
        assert set(given) <= set(answers) and len(set(given)) > 1
    view = ScenarioView(scenario)
    for r in people[:200]:
        profile = view.profile(r, scenario.end)
        if profile is None:
            continue
        data = profile["profileData"]
        assert {k: data[k] for k in REGISTRATION_FORM if k in data} == r.form
        assert data.get("title") == (r.title or None) and data.get("company") == (r.company or None)
        user = view.user(r.user_id, scenario.end)
        assert user is not None and (user["title"], user["company"]) == (r.title, r.company)


def test_the_ground_truth_tells_what_each_registrant_gave() -> None:
    scenario = generate(ScenarioConfig(registrants=200), seed=5)
    truth = {a["user_id"]: a for a in ScenarioView(scenario).truth()["attendees"]}
    for r in scenario.registrants:
        if r.user_id in truth:
            a = truth[r.user_id]
            assert (a["title"], a["company"], a["country"], a["registration"]) == (r.title, r.company, r.country,
                                                                                    r.form)


def test_the_answers_are_fixed_by_the_seed_and_varied() -> None:
    scenario = generate(ScenarioConfig(registrants=300), seed=7)
    again = generate(ScenarioConfig(registrants=300), seed=7)
    assert [r.form for r in scenario.registrants] == [r.form for r in again.registrants]
    assert len({tuple(sorted(r.form.items())) for r in scenario.registrants}) > 50
