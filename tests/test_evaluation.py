"""Evaluation suite: wheel metric (vs a loop re-implementation of the MER-UniBench reference),
per-task metrics, extractors against a real local HTTP server, the CLI and the report."""
from __future__ import annotations

import glob
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nanoemox.cli import main
from nanoemox.data.schema import AffectSample, write_manifest
from nanoemox.errors import ConfigError
from nanoemox.evaluation import metrics as M
from nanoemox.evaluation.extract import ChatClient, JudgeError, LexiconExtractor, LLMExtractor, LLMJudge
from nanoemox.evaluation.runner import evaluate_predictions, score_eri_files
from nanoemox.evaluation.wheel import (
    BUILTIN_SOURCE, benchmark_wheel, load_wheels, parse_label_list, wheel_hit_rate, wheel_set_metric,
)


@pytest.fixture(scope="module")
def wheel_dir(refdata) -> Path:
    return refdata / "emotion_wheel"


@pytest.fixture(scope="module")
def ws(wheel_dir):
    return load_wheels(wheel_dir)


# ---------------------------------------------------------------------------------------------
# a loop re-implementation of the reference computation (test-only), to compare against
# ---------------------------------------------------------------------------------------------
def _ref_split(s):
    if isinstance(s, list):
        return s
    if s is None or (isinstance(s, float) and s != s) or s == "":
        return []
    if s[0] == "[":
        s = s[1:]
    if s[-1] == "]":
        s = s[:-1]
    return [x.strip() for x in re.split("['\",]", s) if x.strip() not in ["", ","]]


class RefWheel:
    def __init__(self, root: Path):
        fmt = pd.read_csv(root / "format.csv")
        self.format2raws = {}
        for _, row in fmt.iterrows():
            raw, forms = row["name"], row["format"]
            forms = "" if pd.isna(forms) else forms
            for f in _ref_split(forms):
                self.format2raws.setdefault(f, []).append(raw)
            self.format2raws.setdefault(raw, []).append(raw)
        syn = pd.read_excel(root / "synonym.xlsx")
        merged = {}
        for run in range(1, 9):
            one = {}
            for _, row in syn.iterrows():
                raw = str(row[f"word_run{run}"]).strip().lower()
                one.setdefault(raw, []).append(raw)
                for s in _ref_split(row[f"synonym_run{run}"]):
                    one.setdefault(str(s).strip().lower(), []).append(raw)
            keys = list(merged) + list(one)
            merged = {k: list(set(merged.get(k, []) + one.get(k, []))) if k in merged and k in one
                      else merged.get(k) or one.get(k) for k in keys}
        self.raw_mapping = merged
        self.maps = {}
        for w in range(1, 6):
            df = pd.read_excel(root / f"wheel{w}.xlsx")
            tree, l1, l2, l3 = {}, "", "", ""
            for _, row in df.iterrows():
                if not pd.isna(row["level1"]):
                    l1 = row["level1"]
                if not pd.isna(row["level2"]):
                    l2 = row["level2"]
                if not pd.isna(row["level3"]):
                    l3 = row["level3"]
                l1, l2, l3 = l1.lower().strip(), l2.lower().strip(), l3.lower().strip()
                tree.setdefault(l1, {}).setdefault(l2, []).append(l3)
            for level in ("level1", "level2"):
                m = {}
                for a in tree:
                    m[a] = a if level == "level1" else sorted(tree[a])[0]
                    for b in tree[a]:
                        m[b] = a if level == "level1" else b
                        for c in tree[a][b]:
                            m[c] = a if level == "level1" else b
                self.maps[(w, level)] = m

    def map(self, label, wmap):
        if label not in self.format2raws:
            return ""
        whole = [r for f in self.format2raws[label] for r in self.raw_mapping[f]]
        for x in sorted(whole):
            if x in wmap:
                return wmap[x]
        return ""

    def metric(self, gold, pred, level="level1"):
        scores = []
        for w in range(1, 6):
            wmap = self.maps[(w, level)]
            acc, rec = [], []
            for g, p in zip(gold, pred):
                G = {m for m in (self.map(x.lower().strip(), wmap) for x in _ref_split(g)) if m != ""}
                P = {m for m in (self.map(x.lower().strip(), wmap) for x in _ref_split(p)) if m != ""}
                if len(G) == 0:
                    continue
                if len(P) == 0:
                    acc.append(0)
                    rec.append(0)
                else:
                    acc.append(len(G & P) / len(P))
                    rec.append(len(G & P) / len(G))
            pr, rc = np.mean(acc), np.mean(rec)
            # the reference divides 0/0 here (NaN); nanoemox scores F = 0, its one deliberate change
            scores.append([2 * pr * rc / (pr + rc) if pr + rc > 0 else 0.0, pr, rc])
        return np.mean(scores, axis=0).tolist(), scores

    def hit_rate(self, gold, pred):
        vals = []
        for w in range(1, 6):
            wmap = self.maps[(w, "level1")]
            hits = []
            for g, p in zip(gold, pred):
                G = {m for m in (self.map(x.lower().strip(), wmap) for x in _ref_split(g)) if m != ""}
                if not G:
                    continue
                P = {m for m in (self.map(x.lower().strip(), wmap) for x in _ref_split(p)) if m != ""}
                hits.append(len(G & P))
            vals.append(np.mean(hits))
        return float(np.mean(vals))


@pytest.fixture(scope="module")
def ref(wheel_dir):
    return RefWheel(wheel_dir)


@pytest.fixture(scope="module")
def emer_labels(refdata, ws):
    """(gold, {model csv: pred}) label lists extracted from the real EMER rationale files."""
    ex = LexiconExtractor(ws)
    root = refdata / "ov-merd-eval"
    gt = pd.read_csv(root / "nano_emox" / "gt-eng.csv")
    gold = ex(list(gt["reasons"]))
    preds = {}
    for f in sorted(glob.glob(str(root / "*" / "*_epoch*.csv"))):
        d = pd.read_csv(f).set_index("names")
        preds[Path(f).name] = ex([d.loc[n, "chi_reasons"] for n in gt["names"]])
    return gold, preds, list(gt["emotions"])


# ---------------------------------------------------------------------------------------------
# the wheel metric
# ---------------------------------------------------------------------------------------------
def test_parse_label_list_like_reference():
    assert parse_label_list("[Happy, 'Excited' ]") == ["happy", "excited"]
    assert parse_label_list(' Sad ,, "ANGRY"') == ["sad", "angry"]
    assert parse_label_list("") == [] and parse_label_list(None) == [] and parse_label_list(float("nan")) == []
    assert parse_label_list(["  Joyful "]) == ["joyful"]
    for s in ["[a, b]", "x,'y',\"z\"", "[]", "one"]:
        assert parse_label_list(s) == [x.lower().strip() for x in _ref_split(s)]


def test_three_step_mapping_hand_checked(ws):
    # step 1 (format): "angrily" -> "angry"; unknown words map nowhere
    assert ws.map_word("angrily", "wheel1") == ws.map_word("angry", "wheel1") == "mad"
    assert ws.map_word("ANGRY ", "wheel1") == "mad"
    assert ws.map_word("definitely-not-an-emotion", "wheel1") is None
    # level2 keeps finer clusters: worried -> anxious on wheel1
    assert ws.map_word("worried", "wheel1", "level2") == "anxious"
    assert ws.map_word("worried", "wheel1", "level1") == "scared"


def test_set_metric_hand_checked_small_cases(ws):
    # identical, disjoint, empty prediction, empty gold (skipped)
    r = wheel_set_metric([["happy"]], [["Happy"]], ws)
    assert r["f"] == pytest.approx(1.0) and r["precision"] == 1.0 and r["recall"] == 1.0
    r = wheel_set_metric([["happy"], ["sad"]], [["happy"], []], ws)
    # sample 1: P=R=1; sample 2: empty P -> 0,0. So P=R=0.5 on every wheel, F=0.5
    assert (r["f"], r["precision"], r["recall"]) == pytest.approx((0.5, 0.5, 0.5))
    r = wheel_set_metric([[], ["happy"]], [["sad"], ["happy", "sad"]], ws)
    # the empty-gold sample is skipped; sample 2: |G&P|=1, |P|=2 (happy and sad are different
    # clusters on every wheel), |G|=1 -> P=0.5, R=1, F=2/3
    assert r["n"] == 1
    assert (r["f"], r["precision"], r["recall"]) == pytest.approx((2 / 3, 0.5, 1.0))
    # nothing scorable, empty input, garbage: zeros, no exception
    for g, p in [([], []), ([["xyzzy"]], [["happy"]]), ([""], [None])]:
        r = wheel_set_metric(g, p, ws)
        assert r["f"] == 0.0 and r["n"] == 0


def test_hit_rate_hand_checked(ws):
    r = wheel_hit_rate(["happy", "sad", "xyzzy", "Angry"], [["joyful"], ["angry"], ["sad"], []], ws)
    # happy~joyful hit on wheels where they share a cluster; xyzzy skipped; angry vs [] miss
    per = [ws.map_word("happy", w) == ws.map_word("joyful", w) for w in ws.wheels]
    assert r["hit_rate"] == pytest.approx(np.mean([h / 3 for h in per]))
    assert r["n"] == 3


def test_alphabetical_first_rule(tmp_path):
    """A word whose synonym group reaches two wheel words maps to the alphabetically first one
    on that wheel; a second wheel without it falls back to the next one."""
    pd.DataFrame({"name": ["glum", "gloomy"], "format": ["glumly", "gloomily"]}).to_csv(tmp_path / "format.csv", index=False)
    syn = {}
    for run in range(1, 9):
        syn[f"word_run{run}"] = ["sad", "depressed"]
        syn[f"synonym_run{run}"] = ["glum, gloomy", "glum"]
    pd.DataFrame(syn).to_excel(tmp_path / "synonym.xlsx", index=False)
    wheel_a = pd.DataFrame({"level1": ["Down", None, "Low"], "level2": ["Depressed", None, "Sad"], "level3": ["x1", "x2", "x3"]})
    wheel_b = pd.DataFrame({"level1": ["Blue"], "level2": ["Sad"], "level3": ["y1"]})
    for i in range(1, 6):
        (wheel_a if i % 2 else wheel_b).to_excel(tmp_path / f"wheel{i}.xlsx", index=False)
    ws = load_wheels(tmp_path)
    # glum -> {sad, depressed}; sorted -> depressed first: on wheel1 depressed -> level1 "down"
    assert ws.map_word("glumly", "wheel1") == "down"
    assert ws.map_word("glum", "wheel1", "level2") == "depressed"
    # wheel2 has no "depressed": next candidate "sad" -> "blue"
    assert ws.map_word("glum", "wheel2") == "blue"
    # gloomy -> {sad} only
    assert ws.map_word("gloomily", "wheel1") == "low"
    ref = RefWheel(tmp_path)
    gold, pred = [["glum"], ["gloomy", "x1"]], [["gloomily"], ["glumly"]]
    for level in ("level1", "level2"):
        r = wheel_set_metric(gold, pred, ws, level)
        (f, p, rc), _ = ref.metric(gold, pred, level)
        assert (r["f"], r["precision"], r["recall"]) == pytest.approx((f, p, rc), abs=1e-12)


def test_matches_reference_on_refdata_emer(ref, ws, emer_labels):
    gold, preds, _ = emer_labels
    for name, pred in preds.items():
        for level in ("level1", "level2"):
            r = wheel_set_metric(gold, pred, ws, level)
            (f, p, rc), per = ref.metric(gold, pred, level)
            assert abs(r["f"] - f) < 1e-9 and abs(r["precision"] - p) < 1e-9 and abs(r["recall"] - rc) < 1e-9, name
            for k, w in enumerate(ws.wheels):
                assert abs(r["per_wheel"][w]["precision"] - per[k][1]) < 1e-9


def test_matches_reference_on_random_words(ref, ws):
    rng = np.random.default_rng(7)
    words = sorted(ws.vocab)
    pool = words + ["Happy", " SAD ", "not-a-word", "angrily"]
    mk = lambda: ", ".join(pool[i] for i in rng.integers(0, len(pool), rng.integers(0, 5)))  # noqa: E731
    gold = [mk() for _ in range(300)]
    pred = [mk() for _ in range(300)]
    r = wheel_set_metric(gold, pred, ws)
    (f, p, rc), _ = ref.metric(gold, pred)
    assert abs(r["f"] - f) < 1e-9 and abs(r["precision"] - p) < 1e-9 and abs(r["recall"] - rc) < 1e-9
    single = [pool[i] for i in rng.integers(0, len(pool), 300)]
    assert abs(wheel_hit_rate(single, pred, ws)["hit_rate"] - ref.hit_rate(single, pred)) < 1e-9


def test_builtin_taxonomy_without_files(monkeypatch, tmp_path):
    monkeypatch.delenv("NANOEMOX_WHEEL_DIR", raising=False)
    ws = load_wheels(None)
    assert ws.source == BUILTIN_SOURCE and "NOT MER-UniBench" in ws.source and not ws.is_mer_unibench
    r = wheel_set_metric([["Happy", "excited"]], [["joyful"]], ws, "level2")  # two clusters, one hit
    assert r["precision"] == 1.0 and r["recall"] == 0.5 and list(r["per_wheel"]) == ["builtin"]
    assert wheel_set_metric([["Happy", "excited"]], [["joyfully"]], ws)["f"] == 1.0  # one family
    with pytest.raises(ConfigError):
        load_wheels(tmp_path / "nope")


def test_benchmark_wheel_runs(wheel_dir):
    b = benchmark_wheel(n=2000, wheel_dir=wheel_dir, repeats=1)
    assert b["n"] == 2000 and b["set_metric_s"] > 0 and 0 <= b["f"] <= 1


# ---------------------------------------------------------------------------------------------
# the CLI
# ---------------------------------------------------------------------------------------------
def test_cli_ovmer_json_matches_reference(tmp_path, ref, wheel_dir, emer_labels, capsys):
    gold, preds, _ = emer_labels
    pred = next(iter(preds.values()))
    rows = [{"name": f"s{i}", "gt": ", ".join(x.upper() for x in g), "pred": "[" + ",  ".join(p) + "]"}
            for i, (g, p) in enumerate(zip(gold, pred))]
    rows.append({"name": "empty", "gt": "", "pred": "happy"})
    csv = tmp_path / "labels.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    for level in ("level1", "level2"):
        assert main(["evaluate", "ovmer", "--labels", str(csv), "--wheel-dir", str(wheel_dir), "--level", level, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        (f, p, rc), per = ref.metric([r["gt"] for r in rows], [r["pred"] for r in rows], level)
        assert set(out) == {"f", "precision", "recall", "per_wheel"}
        assert abs(out["f"] - f) < 1e-9 and abs(out["precision"] - p) < 1e-9 and abs(out["recall"] - rc) < 1e-9
        assert list(out["per_wheel"]) == [f"wheel{i}" for i in range(1, 6)]
        assert abs(out["per_wheel"]["wheel3"]["recall"] - per[2][2]) < 1e-9
    assert main(["evaluate", "ovmer", "--labels", str(csv), "--wheel-dir", str(wheel_dir)]) == 0
    assert "F " in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("name,gold\nx,happy\n")
    assert main(["evaluate", "ovmer", "--labels", str(bad), "--wheel-dir", str(wheel_dir)]) == 2
    assert "missing column" in capsys.readouterr().err
    assert main(["evaluate", "ovmer", "--labels", str(csv), "--wheel-dir", str(tmp_path / "none")]) == 2


def test_eri_files_refdata(refdata, wheel_dir, tmp_path, capsys):
    rows = score_eri_files(refdata / "ov-merd-eval", wheel_dir)
    assert len(rows) == 4 and {r["model"] for r in rows} == {"affectgpt", "nano_emox"}
    for r in rows:
        assert 0 < r["f"] < 1 and r["missing"] == 0 and r["n"] == 100
    out = tmp_path / "eri.md"
    assert main(["evaluate", "eri-files", str(refdata / "ov-merd-eval"), "--wheel-dir", str(wheel_dir), "--out", str(out)]) == 0
    assert "omniaffect_epochcheckpoint_000060" in out.read_text()


# ---------------------------------------------------------------------------------------------
# per-task metrics
# ---------------------------------------------------------------------------------------------
def test_msa_metrics():
    r = M.msa_metrics(["positive", "negative", "neutral", "Positive"], ["POSITIVE", "neutral", "positive", None],
                      gold_scores=[1.5, -2.0, 0.0, None], pred_scores=[1.0, 0.0, 0.4, None])
    # neutral gold dropped; 3 kept: pos->pos right, neg->neutral wrong, pos->missing wrong
    assert r["n"] == 3 and r["n_neutral_dropped"] == 1 and r["accuracy"] == pytest.approx(1 / 3)
    assert r["mae"] == pytest.approx((0.5 + 2.0 + 0.4) / 3) and r["n_scored"] == 3
    assert M.msa_metrics([], [])["waf"] == 0.0


def test_mer_and_classification():
    r = M.mer_metrics(["happy", "sad", "angry"], ["Happy", "joyful", None], candidates=["happy", "sad", "angry"])
    assert r["accuracy"] == pytest.approx(1 / 3) and 0 <= r["waf"] <= 1 and 0 <= r["hit_rate"] <= 1
    c = M.confusion(["a", "b"], ["a", "zzz"])
    assert c["matrix"] == [[1, 0, 0], [0, 0, 1]]
    assert M.classification_metrics([], [])["n"] == 0


def test_mir_tolerant_matching():
    cands = ["Apologise", "Ask for help", "Criticize"]
    r = M.mir_metrics(["Apologise", "Ask for help", "Criticize", "Apologise"], ["Apologize", "ask_for  help", "criticise.", "Thank"], cands)
    assert r["accuracy"] == pytest.approx(1 / 4)  # only "ask_for  help" matches after normalising case/spaces
    assert r["tolerant_accuracy"] == pytest.approx(3 / 4)
    assert M.mir_metrics([], [])["accuracy"] == 0.0


def test_erg_metrics_never_raise():
    r = M.erg_emotion_metrics(["Joyful", "devastated", "zorgish"], ["joyful", "sad", "zorgish"])
    assert r["accuracy"] == pytest.approx(2 / 3)  # exact match counts even for an unknown word
    assert r["hit_rate"] == pytest.approx(2 / 3) and r["n_unknown_gold"] == 1  # unknown never hits
    d = M.distinct_n(["I am so sorry", "sorry sorry sorry", ""], 2)
    assert d["per_response"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert d["corpus"] == pytest.approx(4 / 5)
    assert M.distinct_n([], 1)["corpus"] == 0.0
    assert M.bleu(["the cat sat on the mat"], ["the cat sat on the mat"])["bleu"] == pytest.approx(100.0)
    assert M.bleu([], [])["bleu"] == 0.0
    assert M.rouge_l(["the cat sat"], ["the cat sat"])["rouge_l"] == pytest.approx(1.0)


def test_set_f_and_clue_overlap():
    r = M.set_f([["Happy", "excited"], [], ["sad"]], [["happy"], ["x"], []])
    assert (r["precision"], r["recall"], r["n"]) == (0.5, 0.25, 2)
    clues = [{"face": ["a wide smile"], "voice": ["a bright tone"]}, {"face": ["furrowed brows"]}, None]
    texts = ["She has a Wide smile, and her voice... a bright-tone! Also furrowed brows.", "nothing", "x"]
    c = M.clue_overlap(texts, clues)
    assert c["recall"] == pytest.approx(0.5) and c["n"] == 2
    assert c["precision"] == pytest.approx(2 / 3)  # cites 3 inventory phrases, 2 its own
    assert c["recall_per_modality"] == {"face": 0.5, "voice": 1.0}
    assert M.clue_overlap([], [])["recall"] == 0.0


# ---------------------------------------------------------------------------------------------
# extractors and the judge, against a real HTTP server on 127.0.0.1
# ---------------------------------------------------------------------------------------------
class _Chat(BaseHTTPRequestHandler):
    mode = "ok"
    seen: list = []

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Chat.seen.append(body)
        prompt = body["messages"][-1]["content"]
        if _Chat.mode == "fail":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"boom")
            return
        if "CLUE" in prompt:
            content = "CLUE: 7; EMOTION: 9" if _Chat.mode == "ok" else "I cannot judge this."
        else:  # extraction: echo the known emotion words of the description, in order
            desc = prompt.split("Description:")[-1].lower()
            content = ", ".join(w for w in ("angry", "happy", "sad", "worried") if w in desc) or "none"
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def chat_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Chat)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    _Chat.mode, _Chat.seen = "ok", []
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def test_llm_extractor_and_judge(chat_server):
    ext = LLMExtractor(ChatClient(chat_server, model="m"))
    assert ext(["He is Sad and worried.", "", "calm"]) == [["sad", "worried"], [], []]
    assert _Chat.seen[0]["temperature"] == 0 and _Chat.seen[0]["model"] == "m"
    judge = LLMJudge(ChatClient(chat_server))
    r = judge(["pred a", "pred b"], ["ref a", "ref b"])
    assert (r["clue_score"], r["emotion_score"], r["n_missing"]) == (7.0, 9.0, 0)
    _Chat.mode = "garbage"
    with pytest.raises(JudgeError):
        judge(["p"], ["r"])
    r = LLMJudge(ChatClient(chat_server), on_error="missing")(["p", "q"], ["r", "s"])
    assert r["n_missing"] == 2 and r["clue_score"] is None  # missing, never a silent 0
    _Chat.mode = "fail"
    with pytest.raises(JudgeError):
        ext(["angry"])


def test_lexicon_extractor(ws):
    ex = LexiconExtractor(ws)
    text = "His voice is loud and he is not happy. Therefore, his emotional state is anger and frustration."
    assert ex.extract(text) == ["anger", "frustration"]
    assert ex.extract("He does not seem happy, he looks Worried.") == ["worried"]
    assert ex.extract("") == [] and ex.extract(None) == []


# ---------------------------------------------------------------------------------------------
# evaluate run: every task, missing predictions, several checkpoints, the report
# ---------------------------------------------------------------------------------------------
def _gold():
    return [
        AffectSample(id="m1", task="mer", emotion="happy", candidates={"mer": ["happy", "sad", "angry"]}),
        AffectSample(id="m2", task="mer", emotion="sad", candidates={"mer": ["happy", "sad", "angry"]}),
        AffectSample(id="s1", task="msa", sentiment_score=2.0),
        AffectSample(id="s2", task="msa", sentiment_score=-1.0),
        AffectSample(id="o1", task="ovmer", ov_labels=["happy", "excited"]),
        AffectSample(id="e1", task="eri", reason="She smiles. Therefore she is happy.", emotion="happy",
                     clues={"face": ["a wide smile"], "voice": ["a bright tone"]}),
        AffectSample(id="i1", task="mir", intent="Apologise", candidates={"mir": ["Apologise", "Thank"]}),
        AffectSample(id="g1", task="erg", response="I'm so sorry to hear that.", chain_of_empathy={"emotion": "sad"}),
    ]


def _preds(good: bool):
    return [
        {"id": "m1", "task": "mer", "label": "Happy", "labels": []},
        {"id": "s1", "task": "msa", "label": "positive", "score": 1.5},
        {"id": "s2", "task": "msa", "label": "negative" if good else "positive", "score": -0.5},
        {"id": "o1", "task": "ovmer", "labels": ["happy"] if good else [], "raw": "The character's emotional state is joyful."},
        {"id": "e1", "task": "eri", "reason": "A wide smile and a bright tone, so she is happy.", "emotion": "happy"},
        {"id": "i1", "task": "mir", "label": "Apologize" if good else "Thank"},
        {"id": "g1", "task": "erg", "reply": "Oh no, I'm sorry, that sounds hard.", "emotion": "devastated" if good else "unknownish"},
    ]


def test_evaluate_predictions_all_tasks(ws):
    res = evaluate_predictions(_preds(True), _gold(), ws=ws)
    assert set(res) == {"mer", "msa", "ovmer", "eri", "mir", "erg", "_summary"}
    assert res["mer"]["missing"] == 1 and res["mer"]["accuracy"] == 0.5
    assert res["msa"]["waf"] == 1.0
    assert res["ovmer"]["wheel_free_f"] == pytest.approx(2 / 3)
    assert res["eri"]["clue_recall"] == 1.0 and res["eri"]["emotion_accuracy"] == 1.0
    assert res["mir"]["accuracy"] == 0.0 and res["mir"]["tolerant_accuracy"] == 1.0
    assert res["erg"]["emotion_accuracy"] == 0.0 and res["erg"]["emotion_hit_rate"] == 1.0
    for t in ("mer", "msa", "ovmer", "eri", "mir", "erg"):
        assert "value" in res[t]["headline"]
    empty = evaluate_predictions([], _gold(), ws=ws)
    assert empty["mer"]["missing"] == 2 and empty["erg"]["dist2"] == 0.0


def test_cli_run_report_with_checkpoints(tmp_path, wheel_dir, capsys):
    gold = tmp_path / "gold.jsonl"
    write_manifest(gold, _gold())
    paths = []
    for k, good in enumerate((True, False)):
        p = tmp_path / f"ckpt{k}.jsonl"
        p.write_text("".join(json.dumps(d) + "\n" for d in _preds(good)))
        paths += ["--pred", str(p)]
    out = tmp_path / "report"
    assert main(["evaluate", "run", *paths, "--manifest", str(gold), "--wheel-dir", str(wheel_dir), "--out", str(out)]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["checkpoints"] == ["ckpt0", "ckpt1"]
    agg = doc["aggregate"]["mir"]["tolerant_accuracy"]
    assert (agg["mean"], agg["k"]) == (0.5, 2) and agg["std"] == pytest.approx(np.std([1, 0], ddof=1))
    assert "mean ± std" in (out / "metrics.md").read_text()
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") >= 3 and "74.01" in page
    assert "report:" in capsys.readouterr().out
    # a manifest that is not there is a one-line error
    assert main(["evaluate", "run", "--pred", str(tmp_path / "ckpt0.jsonl"), "--manifest", str(tmp_path / "x.jsonl"), "--out", str(out)]) == 2


def test_every_word_form_maps_like_reference(ref, ws):
    """All 7k+ word forms, 5 wheels, 2 levels: the precomputed masks equal the reference's
    per-word three-step mapping (which also shows the reference never hits its KeyError here)."""
    for j, wname in enumerate(ws.wheels):
        for level in ("level1", "level2"):
            wmap = ref.maps[(j + 1, level)]
            for word in ws.vocab:
                assert (ws.map_word(word, wname, level) or "") == ref.map(word, wmap), (word, wname, level)
