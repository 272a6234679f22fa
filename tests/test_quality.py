"""Live quality: an annotator submits a pre-labeled task; the backend compares what they kept with the
prediction they saw, and adds those reviews up per model_version, label and score (pure parts and real Redis)."""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from rq import Queue

from backend.commands.cli import main
from backend.evaluation.live import auto_threshold, controls_of, figures, review, reviews_from_tasks, seen_prediction
from backend.evaluation.quality_report import html, lines
from backend.labeling.parser import parse_spec
from backend.model.options import BadOptions, parse_options
from backend.pipeline import quality, thresholds
from backend.settings import Settings
from backend.web.webhooks import handle_event
from tests.conftest import MULTI_CONFIG

QTYPE = """<View><Text name="text" value="$text"/>
<Choices name="qtype" toName="text"><Choice value="HUM"/><Choice value="LOC"/><Choice value="NUM"/></Choices></View>"""
NER = """<View><Text name="text" value="$text"/>
<Labels name="entities" toName="text"><Label value="person"/><Label value="location"/></Labels></View>"""
TEXT = "Alice flew from Paris to Berlin."


def choice(label: str) -> list[dict]:
    return [{"from_name": "qtype", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def span(start: int, end: int, label: str) -> dict:
    return {
        "from_name": "entities",
        "to_name": "text",
        "type": "labels",
        "value": {"start": start, "end": end, "text": TEXT[start:end], "labels": [label]},
    }


def prediction(pid: int, label: str, at: str, version: str = "fsp-aaaaaaaaaaaa", score: float = 0.9) -> dict:
    return {"id": pid, "result": choice(label), "score": score, "model_version": version, "created_at": at}


def annotation(aid: int, label: str, at: str, **extra) -> dict:
    return {"id": aid, "result": choice(label), "created_at": at, "updated_at": at, **extra}


# ---- which prediction the annotator saw ------------------------------------------------------------------------


def test_the_newest_prediction_of_ours_made_before_the_annotation_is_the_one_seen():
    older = prediction(1, "HUM", "2026-01-01T10:00:00Z", "fsp-000000000001")
    newer = prediction(2, "LOC", "2026-01-01T11:00:00.5Z", "fsp-000000000002")
    later = prediction(3, "NUM", "2026-01-01T13:00:00Z", "fsp-000000000003")
    foreign = prediction(4, "NUM", "2026-01-01T11:30:00Z", "someone-else")
    made = annotation(9, "LOC", "2026-01-01T12:00:00+00:00")
    assert seen_prediction(made, [later, older, foreign, newer])["id"] == 2


def test_parent_prediction_wins_over_timestamps_and_a_foreign_parent_is_no_review():
    older = prediction(1, "HUM", "2026-01-01T10:00:00Z", "fsp-000000000001")
    newer = prediction(2, "LOC", "2026-01-01T11:00:00Z", "fsp-000000000002")
    foreign = prediction(4, "NUM", "2026-01-01T09:00:00Z", "someone-else")
    made = "2026-01-01T12:00:00Z"
    assert seen_prediction(annotation(9, "HUM", made, parent_prediction=1), [older, newer])["id"] == 1
    assert seen_prediction(annotation(9, "HUM", made, parent_prediction=4), [older, newer, foreign]) is None
    assert seen_prediction(annotation(9, "HUM", "2026-01-01T08:00:00Z"), [older, newer]) is None


# ---- one review -----------------------------------------------------------------------------------------------


def test_an_annotation_that_kept_the_prediction_is_accepted_and_a_changed_one_is_not():
    spec = parse_spec(QTYPE)
    task = {"id": 5, "data": {"text": "Who?"}}
    seen = [prediction(1, "HUM", "2026-01-01T10:00:00Z")]
    kept, _ = review(spec, task, annotation(7, "HUM", "2026-01-01T10:05:00Z"), seen)
    changed, _ = review(spec, task, annotation(8, "LOC", "2026-01-01T10:06:00Z"), seen)
    assert kept["accepted"] and not changed["accepted"]
    assert changed["controls"] == {"qtype": {"gold": ["LOC"], "predicted": ["HUM"]}}
    assert (changed["model_version"], changed["score"], changed["task"]) == ("fsp-aaaaaaaaaaaa", 0.9, 5)
    assert review(spec, task, {**annotation(9, "HUM", "2026-01-01T10:07:00Z"), "was_cancelled": True}, seen) == (
        None,
        "cancelled",
    )
    assert review(spec, task, annotation(9, "HUM", "2026-01-01T09:00:00Z"), seen) == (None, "no_prediction")


def test_spans_removed_or_added_by_the_annotator_count_per_label_exact_and_overlap():
    spec = parse_spec(NER)
    task = {"id": 1, "data": {"text": TEXT}}
    predicted = {
        "id": 1,
        "result": [span(0, 5, "person"), span(16, 21, "location")],
        "score": 0.8,
        "model_version": "fsp-aaaaaaaaaaaa",
        "created_at": "2026-01-01T10:00:00Z",
    }
    # The annotator kept Alice, widened Paris by one character, and added Berlin.
    made = {
        "id": 3,
        "created_at": "2026-01-01T11:00:00Z",
        "result": [span(0, 5, "person"), span(15, 21, "location"), span(25, 31, "location")],
    }
    record, _ = review(spec, task, made, [predicted])
    assert record["accepted"] is False
    found = figures([record], controls_of(spec))
    location = found["controls"]["entities"]["exact"]["per_label"]["location"]
    assert (location["precision"], location["recall"]) == (0.0, 0.0)  # Paris moved, Berlin missed
    overlap = found["controls"]["entities"]["overlap"]["per_label"]["location"]
    assert (overlap["precision"], overlap["recall"]) == (1.0, 0.5)  # Paris overlaps; Berlin was not predicted
    assert found["controls"]["entities"]["exact"]["per_label"]["person"]["f1"] == 1.0


def test_a_structured_annotation_that_clears_a_predicted_value_is_a_change():
    spec = parse_spec(NER)
    task = {"id": 1, "data": {"text": TEXT}}
    predicted = {
        "id": 1,
        "result": [span(0, 5, "person")],
        "score": 0.8,
        "model_version": "fsp-aaaaaaaaaaaa",
        "created_at": "2026-01-01T10:00:00Z",
    }
    record, _ = review(spec, task, {"id": 3, "created_at": "2026-01-01T11:00:00Z", "result": []}, [predicted])
    assert record["accepted"] is False and record["controls"]["entities"] == {
        "gold": [],
        "predicted": [{"text": "Alice", "label": "person", "start": 0, "end": 5}],
    }


# ---- figures --------------------------------------------------------------------------------------------------


def records_for(labels: list[tuple[str, str, float, str]]) -> list[dict]:
    """(annotated, predicted, score, version) per task, through review() as the backend makes them."""
    spec = parse_spec(QTYPE)
    tasks = []
    for i, (gold, predicted, score, version) in enumerate(labels):
        tasks.append(
            {
                "id": i + 1,
                "data": {"text": f"t{i}"},
                "annotations": [annotation(100 + i, gold, f"2026-01-0{1 + i % 3}T12:00:00Z")],
                "predictions": [prediction(i + 1, predicted, "2026-01-01T00:00:00Z", version, score)],
            }
        )
    found, skipped = reviews_from_tasks(spec, tasks)
    assert not skipped
    return found


def test_figures_per_label_per_version_and_over_time():
    rows = [
        ("HUM", "HUM", 0.9, "fsp-v1"),
        ("HUM", "LOC", 0.6, "fsp-v1"),
        ("LOC", "LOC", 0.8, "fsp-v2"),
        ("NUM", "NUM", 0.95, "fsp-v2"),
    ]
    found = figures(records_for(rows), controls_of(parse_spec(QTYPE)), target=0.95)
    assert (found["reviewed"], found["accepted"], found["accepted_share"]) == (4, 3, 0.75)
    assert {v: (r["reviewed"], r["accepted_share"]) for v, r in found["by_model_version"].items()} == {
        "fsp-v1": (2, 0.5),
        "fsp-v2": (2, 1.0),
    }
    qtype = found["controls"]["qtype"]
    assert qtype["per_label"]["LOC"]["precision"] == 0.5 and qtype["per_label"]["HUM"]["recall"] == 0.5
    assert qtype["confusion"]["HUM"] == {"HUM": 1, "LOC": 1, "NUM": 0, "(failed)": 0}
    assert found["recommended_threshold"] == 0.8 and found["recommended_coverage"] == 0.75
    assert [(d["day"], d["reviewed"]) for d in found["over_time"]] == [
        ("2026-01-01", 2),
        ("2026-01-02", 1),
        ("2026-01-03", 1),
    ]


@hsettings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.sampled_from([0.3, 0.5, 0.7, 0.9, 1.0])), min_size=1, max_size=30),
    st.sampled_from([0.5, 0.8, 0.95]),
)
def test_the_recommended_threshold_is_the_lowest_whose_accepted_share_reaches_the_target(reviews, target):
    rows = [("HUM", "HUM" if ok else "LOC", score, "fsp-v1") for ok, score in reviews]
    found = figures(records_for(rows), controls_of(parse_spec(QTYPE)), target=target)
    assert found["accepted_share"] == sum(ok for ok, _ in reviews) / len(reviews)

    def share_at(t):
        kept = [ok for ok, score in reviews if score >= t]
        return sum(kept) / len(kept)

    reaching = [t for t in {s for _, s in reviews} if share_at(t) >= target]
    assert found["recommended_threshold"] == (min(reaching) if reaching else None)
    if reaching:
        assert found["recommended_coverage"] == sum(s >= min(reaching) for _, s in reviews) / len(reviews)


def test_threshold_auto_waits_for_enough_scored_reviews():
    found = figures(records_for([("HUM", "HUM", 0.9, "fsp-v1")] * 3), controls_of(parse_spec(QTYPE)))
    assert auto_threshold(found, 4)[0] is None and "3 scored reviews, 4 needed" in auto_threshold(found, 4)[1]
    assert auto_threshold(found, 3)[0] == 0.9


def test_the_page_is_self_contained_well_formed_and_has_its_plots():
    found = figures(
        records_for([("HUM", "HUM", 0.9, "fsp-v1"), ("HUM", "LOC", 0.4, "fsp-v1")]), controls_of(parse_spec(QTYPE))
    )
    page = html(3, found, {"threshold": None, "evidence": "2 scored reviews, 100 needed"})
    root = ET.fromstring(page.split("\n", 1)[1])  # after the doctype
    labels = [e.get("aria-label") for e in root.iter("{http://www.w3.org/2000/svg}svg")] + [
        e.get("aria-label") for e in root.iter("svg")
    ]
    assert "Reliability diagram: accepted share against mean score per bin" in labels
    assert "http" not in page.replace("http://www.w3.org", "")  # nothing fetched from elsewhere
    assert lines(3, found)[0] == "project 3: 2 reviewed (2 tasks), 1 accepted as-is (0.500)"


# ---- Redis: records replace, never add -----------------------------------------------------------------------


def test_an_updated_annotation_replaces_its_review_and_a_deleted_one_leaves(redis_conn, caplog):
    spec = parse_spec(QTYPE)
    settings = Settings.from_env({"AUTO_THRESHOLD_MIN_REVIEWS": "2", "QUALITY_TARGET": "0.9"})
    first = records_for([("HUM", "HUM", 0.9, "fsp-v1"), ("LOC", "LOC", 0.8, "fsp-v1")])
    quality.replace_all(redis_conn, 7, first)
    with caplog.at_level(logging.INFO, logger="backend.pipeline.quality"):
        found = quality.refresh(redis_conn, settings, 7, spec, auto=True)
    assert (found["reviewed"], found["accepted_share"]) == (2, 1.0)
    assert thresholds.applied_threshold(redis_conn, 7)["threshold"] == 0.8
    assert "threshold auto moves from SCORE_THRESHOLD to 0.8: 2 scored reviews" in caplog.text
    # The annotator of task 1 changes their mind: the same annotation, updated, now disagrees.
    updated = records_for([("LOC", "HUM", 0.9, "fsp-v1")])
    for _ in range(2):  # the webhook may arrive twice
        quality.put_task_reviews(redis_conn, 7, [1], updated)
        found = quality.refresh(redis_conn, settings, 7, spec, auto=True)
    assert (found["reviewed"], found["accepted"]) == (2, 1)
    assert thresholds.applied_threshold(redis_conn, 7)["threshold"] is None  # 0.5 at 0.8, 0.0 at 0.9: none backed
    assert quality.remove_annotations(redis_conn, 7, {100}) == 1
    assert quality.refresh(redis_conn, settings, 7, spec)["reviewed"] == 1


def test_an_annotation_event_asks_a_worker_to_review_its_task(redis_conn):
    queue = Queue("quality-test", connection=redis_conn)
    body = {
        "annotation": {"id": 3, "task": 11, "result": choice("HUM"), "created_at": "2026-01-01T00:00:00Z"},
        "task": {"id": 11, "data": {"text": "Who?"}},
    }
    handle_event(redis_conn, queue, Settings.from_env({}), parse_spec(QTYPE), 4, "ANNOTATION_UPDATED", body)
    assert queue.job_ids == []  # no Label Studio to read the task from
    settings = Settings.from_env({"LABEL_STUDIO_URL": "http://localhost:8080"})
    handle_event(redis_conn, queue, settings, parse_spec(QTYPE), 4, "ANNOTATION_UPDATED", body)
    jobs = [queue.fetch_job(job_id) for job_id in queue.job_ids]
    assert [(j.func_name, j.args) for j in jobs] == [("backend.pipeline.jobs.review_annotations", (4, [11]))]


# ---- options and commands -------------------------------------------------------------------------------------


def test_threshold_auto_is_an_option_and_other_words_are_refused():
    settings = Settings.from_env({})
    assert parse_options({"threshold": "auto"}, settings) == {"threshold": "auto"}
    with pytest.raises(BadOptions, match="option 'threshold' must be a float or \"auto\""):
        parse_options({"threshold": "automatic"}, settings)


def test_min_score_auto_needs_a_project_and_says_so(tmp_path, capsys):
    (tmp_path / "config.xml").write_text(MULTI_CONFIG)
    (tmp_path / "rows.jsonl").write_text(json.dumps({"text": "x", "label": "food"}) + "\n")
    code = main(
        [
            "export",
            "--input",
            str(tmp_path / "rows.jsonl"),
            "--config",
            str(tmp_path / "config.xml"),
            "--format",
            "jsonl",
            "--output",
            str(tmp_path / "out.jsonl"),
            "--include-predictions",
            "--min-score",
            "auto",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert (
        code == 2
        and err == "error: --min-score auto reads the live quality of a Label Studio project: use it with --project"
    )


def test_the_quality_command_without_label_studio_says_which_setting_is_missing(capsys):
    assert main(["quality", "--project", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no Label Studio URL: set LABEL_STUDIO_URL")


def test_threshold_auto_applies_the_backed_threshold_to_the_project_context(redis_conn):
    from backend.pipeline.projects import Contexts, register

    settings = Settings.from_env(
        {
            "AUTO_THRESHOLD_MIN_REVIEWS": "2",
            "QUALITY_TARGET": "0.9",
            "SCORE_THRESHOLD": "0.1",
            "EMBEDDING_MODEL": "tfidf",
        }
    )
    register(redis_conn, 8, QTYPE, {"threshold": "auto"})
    contexts = Contexts(settings, redis_conn)
    assert contexts.get(8).threshold == 0.1  # nothing backs a threshold yet: SCORE_THRESHOLD
    quality.replace_all(redis_conn, 8, records_for([("HUM", "HUM", 0.9, "fsp-v1"), ("LOC", "HUM", 0.6, "fsp-v1")]))
    quality.refresh(redis_conn, settings, 8, parse_spec(QTYPE), auto=True)
    assert contexts.get(8).threshold == 0.9  # the same cached context, the live threshold
    assert contexts.get(8).prediction({"labels": ["HUM"], "score": 0.7})["error"] == "low_score"


def test_concurrent_events_leave_figures_that_count_every_review(redis_conn):
    """Eight workers record a review each at once; whoever holds the lock recomputes until nothing is stale."""
    from concurrent.futures import ThreadPoolExecutor

    from backend.state.store import connect

    spec, settings = parse_spec(QTYPE), Settings.from_env({})
    url = "redis://{host}:{port}/{db}".format(**redis_conn.connection_pool.connection_kwargs)
    made = records_for([("HUM", "HUM" if i % 4 else "LOC", 0.5 + i / 20, "fsp-v1") for i in range(8)])

    def event(record):
        connection = connect(url)
        quality.put_task_reviews(connection, 9, [record["task"]], [record])
        return quality.refresh(connection, settings, 9, spec)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(event, made))
    found = quality.stored_figures(redis_conn, 9)
    assert (found["reviewed"], found["accepted"]) == (8, 6)


MIXED = """<View><Text name="text" value="$text"/>
<Choices name="topic" toName="text"><Choice value="billing"/><Choice value="bug"/></Choices>
<TextArea name="summary" toName="text"/>
<Rating name="urgency" toName="text" maxRating="5"/></View>"""


def test_each_control_of_a_multi_control_config_gets_its_own_figures():
    spec = parse_spec(MIXED)

    def result(topic: str, summary: str, urgency: int) -> list[dict]:
        return [
            {"from_name": "topic", "to_name": "text", "type": "choices", "value": {"choices": [topic]}},
            {"from_name": "summary", "to_name": "text", "type": "textarea", "value": {"text": [summary]}},
            {"from_name": "urgency", "to_name": "text", "type": "rating", "value": {"rating": urgency}},
        ]

    seen = {
        "id": 1,
        "result": result("bug", "app crashes on login", 4),
        "score": 0.7,
        "model_version": "fsp-aaaaaaaaaaaa",
        "created_at": "2026-01-01T10:00:00Z",
    }
    tasks = [
        {
            "id": 1,
            "data": {"text": "It crashes"},
            "predictions": [seen],
            "annotations": [
                {"id": 1, "created_at": "2026-01-01T11:00:00Z", "result": result("bug", "app crashes at login", 2)}
            ],
        },
        {
            "id": 2,
            "data": {"text": "Crash"},
            "predictions": [{**seen, "id": 2}],
            "annotations": [
                {"id": 2, "created_at": "2026-01-01T11:00:00Z", "result": result("bug", "app crashes on login", 4)}
            ],
        },
    ]
    found = figures(reviews_from_tasks(spec, tasks)[0], controls_of(spec))
    assert (found["reviewed"], found["accepted"]) == (2, 1)
    controls = found["controls"]
    assert controls["topic"]["exact_match"] == 1.0
    assert controls["summary"]["exact_match"] == 0.5 and controls["summary"]["token_f1"] == pytest.approx(
        (0.75 + 1.0) / 2
    )  # 3 of 4 tokens shared
    assert controls["urgency"]["mae"] == 1.0 and controls["urgency"]["exact_match"] == 0.5


@pytest.fixture
def web(redis_conn, redis_url):
    from backend.web.ml_adapter import create_app

    return create_app(Settings.from_env({"REDIS_URL": redis_url}), redis_conn).test_client()


def test_get_quality_answers_json_or_a_page_and_refuses_a_missing_project(web, redis_conn):
    from backend.pipeline.projects import register

    register(redis_conn, 6, QTYPE)
    quality.replace_all(redis_conn, 6, records_for([("HUM", "HUM", 0.9, "fsp-v1"), ("HUM", "LOC", 0.5, "fsp-v1")]))
    quality.refresh(redis_conn, Settings.from_env({}), 6, parse_spec(QTYPE))
    answer = web.get("/quality?project=6")
    assert answer.status_code == 200 and answer.json["reviewed"] == 2 and answer.json["rebuilding"] is False
    page = web.get("/quality?project=6", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.mimetype == "text/html" and "<title>Live quality of project 6</title>" in page.get_data(True)
    status = web.get("/status?project=6").json["projects"][0]["quality"]
    assert (status["reviewed"], status["accepted_share"]) == (2, 0.5)
    missing = web.get("/quality")
    assert missing.status_code == 400 and "a project id is needed" in missing.json["error"]
    unknown = web.get("/quality?project=99").json  # no Label Studio to read it from: nothing to rebuild
    assert (unknown["reviewed"], unknown["rebuilding"]) == (0, False)
