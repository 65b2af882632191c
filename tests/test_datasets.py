"""Dataset adapters: the real annotation files in ../shared/refdata, and small fixtures written here
in each remaining benchmark's published format."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from nanoemox.data.datasets import ConversionResult, MediaLocator, convert, formats, get_format
from nanoemox.data.schema import AffectSample, read_manifest
from nanoemox.errors import DataError
from nanoemox.prompts import MINTREC_INTENTS


def _check_roundtrip(result: ConversionResult, tmp_path: Path) -> None:
    """Every record survives the manifest format."""
    from nanoemox.data.schema import write_manifest

    out = tmp_path / f"{result.format}.jsonl"
    write_manifest(out, result.samples)
    back = read_manifest(out, resolve_media=False)
    assert [s.to_dict() for s in back] == [s.to_dict() for s in result.samples]


# --- real files ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fmt,rel,n,n_labels",
    [
        ("mintrec", "MIntRec/train_MIntRec_ann.json", 1779, 20),
        ("mintrec", "MIntRec/test_MIntRec_ann.json", 445, 20),
        ("mintrec2", "MIntRec2/train_MIntRec2_ann.json", 5644, 30),
        ("mintrec2", "MIntRec2/test_MIntRec2_ann.json", 1044, 30),
    ],
)
def test_mintrec_real_files(refdata, tmp_path, fmt, rel, n, n_labels):
    r = convert(fmt, refdata / "data" / rel)
    assert len(r.samples) == n and r.skipped == []
    intents = {s.intent for s in r.samples}
    assert len(intents) == n_labels
    for s in r.samples:
        assert s.task == "mir" and s.tasks() == ["mir"]
        assert len(s.candidates["mir"]) == n_labels and s.intent in s.candidates["mir"]
        assert s.transcript and s.video.endswith(".mp4")
    if fmt == "mintrec":
        assert r.samples[0].candidates["mir"] == list(MINTREC_INTENTS)
    assert len({s.id for s in r.samples}) == n
    split = "train" if "train" in rel else "test"
    assert all(s.meta["split"] == split for s in r.samples)
    # the authors' paths are remapped onto the media root (here: the annotation folder)
    first = r.samples[0]
    assert first.video == str((refdata / "data" / rel).parent.resolve() / "video" / f"{first.id}.mp4")
    assert len(r.missing_media) == n  # the media are not distributed
    _check_roundtrip(r, tmp_path)


def test_mintrec_media_root_remap(refdata, tmp_path):
    """Files present under --media-root are found, the others reported missing."""
    root = tmp_path / "MIntRec_media"
    (root / "video").mkdir(parents=True)
    r0 = convert("mintrec", refdata / "data/MIntRec/test_MIntRec_ann.json", media_root=root)
    present = r0.samples[:3]
    (root / "video" / f"{present[0].id}.mp4").write_bytes(b"x")
    (root / "elsewhere").mkdir()
    (root / "elsewhere" / f"{present[1].id}.mp4").write_bytes(b"x")  # found through the index
    r = convert("mintrec", refdata / "data/MIntRec/test_MIntRec_ann.json", media_root=root)
    assert r.samples[0].video == str(root.resolve() / "video" / f"{present[0].id}.mp4")
    assert r.samples[1].video == str(root.resolve() / "elsewhere" / f"{present[1].id}.mp4")
    assert r.samples[2].video == str(root.resolve() / "video" / f"{present[2].id}.mp4")
    assert len(r.missing_media) == 445 - 2


def test_crema_d_real_file(refdata, tmp_path):
    r = convert("crema_d", refdata / "data/crema_d_annotations.json")
    assert len(r.samples) == 7442 and r.skipped == []
    emotions = Counter(s.emotion for s in r.samples)
    assert set(emotions) == {"angry", "disgust", "fear", "happy", "neutral", "sad"}
    s = r.samples[0]
    assert s.audio.endswith("audio/Anger_1001_DFA_ANG_XX.wav") and s.video is None
    assert s.emotion == "angry" and s.meta["label"] == "anger" and s.meta["actor"] == "1001"
    assert s.meta["sentence"] == "Don't forget a jacket." and s.task == "mer"
    assert s.candidates["mer"] == ["angry", "disgust", "fear", "happy", "neutral", "sad"]
    assert len({x.id for x in r.samples}) == 7442
    _check_roundtrip(r, tmp_path)


def test_merr_real_file(refdata):
    r = convert("merr", refdata / "data/MERR/MERR_fine_grained.json")
    assert len(r.samples) == 4487
    s = r.samples[0]
    assert s.id == "sample_00000023" and s.task == "eri" and s.emotion == "angry"
    assert s.reason.startswith("In the video") and s.transcript == "I was originally trying to be quiet."
    assert s.clues["face"] == ["Frowns furrowed"] and s.clues["voice"] == ["his tone sounds negative"]
    assert s.meta["AU_list"] == ["AU04"]
    assert all(x.reason for x in r.samples)


def test_emer_real_files(refdata):
    r = convert("emer", refdata / "data/EMER/gt-eng.csv")
    assert len(r.samples) == 100
    s = r.samples[0]
    assert s.id == "sample_00000648" and s.emotion == "angry" and s.task == "eri"
    assert s.transcript == "Don't talk to me about feelings anymore." and "anger" in s.reason
    assert s.meta["reason_zh"].startswith("在视频中")  # gt.csv beside it
    zh = convert("emer", refdata / "data/EMER/gt.csv")
    assert len(zh.samples) == 100 and zh.samples[0].reason.startswith("在视频中")
    folder = convert("emer", refdata / "data/EMER")
    assert len(folder.samples) == 100


def test_dfew_real_file(refdata):
    r = convert("dfew", refdata / "data/dfew/annotation.xlsx")
    assert len(r.samples) == 16372
    first = r.samples[0]
    assert first.id == "00001" and first.emotion == "sad" and first.meta["votes"]["sad"] == 6 and first.meta["majority"]
    labelled = [s for s in r.samples if s.emotion]
    unlabelled = [s for s in r.samples if not s.emotion]
    assert len(labelled) == 12059 and len(unlabelled) == 4313
    assert all(s.tasks() == [] and s.meta["majority"] is False for s in unlabelled)  # kept, never trained on
    assert all(sum(s.meta["votes"].values()) == 10 for s in r.samples[:100])
    assert not any("vote_majority" in s.meta for s in r.samples)  # the votes agree with the file's labels
    assert set(Counter(s.emotion for s in labelled)) == {"happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"}
    assert first.video.endswith("00001.mp4")


# --- documented public formats (fixtures written here) ------------------------------------------------
def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_mintrec_official_tsv(tmp_path):
    src = _write(tmp_path / "MIntRec" / "train.tsv", "season\tepisode\tclip\ttext\tlabel\n"
                 "S04\tE01\t1\tthank you so much.\tThank\nS05\tE16\t329\tapparently, teens are drinking...\tInform\n"
                 "S06\tE02\t12\twhatever\tShrug\n")
    media = tmp_path / "MIntRec" / "raw_data" / "S04" / "E01"
    media.mkdir(parents=True)
    (media / "1.mp4").write_bytes(b"x")
    r = convert("mintrec", src)
    assert [s.id for s in r.samples] == ["S04_E01_1", "S05_E16_329"]
    assert r.samples[0].video == str(media.resolve() / "1.mp4") and r.samples[0].intent == "Thank"
    assert len(r.skipped) == 1 and "Shrug" in r.skipped[0][1]
    assert r.missing_media == [r.samples[1].video]


def test_mintrec2_official_tsv(tmp_path):
    src = _write(tmp_path / "dev.tsv", "Dialogue_id\tUtterance_id\tText\tLabel\n0\t0\tso without further ado\tIntroduce\n"
                 "0\t1\thuh?\tUNK\n15\t0\tthank you.\tThank\n")
    r = convert("mintrec2", src)
    assert [s.id for s in r.samples] == ["dia0_utt0", "dia15_utt0"]
    assert r.samples[1].intent == "Thank" and len(r.samples[1].candidates["mir"]) == 30
    assert r.skipped[0][1].startswith("out-of-scope")
    assert all(s.meta["split"] == "val" for s in r.samples)


def test_crema_d_folder_of_wavs(tmp_path):
    for n in ("1001_DFA_ANG_XX.wav", "1002_IEO_HAP_HI.wav", "1003_TIE_SAD_LO.wav", "notes.wav"):
        (tmp_path / n).write_bytes(b"x")
    r = convert("crema_d", tmp_path)
    assert [s.emotion for s in r.samples] == ["angry", "happy", "sad"]
    assert r.samples[1].meta["intensity"] == "high" and r.samples[1].meta["sentence"] == "It's eleven o'clock."
    assert r.missing_media == [] and len(r.skipped) == 1


def test_mer2024_folder_merges_labels_and_transcripts(tmp_path):
    d = tmp_path / "MER2024"
    _write(d / "label-disdim.csv", "name,discrete,valence\nsample_00000001,happy,2.5\nsample_00000002,worried,-1.0\n"
           "sample_00000003,,0\n")
    _write(d / "label-transcription.csv", "name,chinese,english\nsample_00000001,我很高兴,I am so happy.\n"
           "sample_00000002,怎么办,What should I do?\n")
    (d / "video-labeled").mkdir()
    (d / "video-labeled" / "sample_00000001.avi").write_bytes(b"x")
    r = convert("mer2024", d)
    assert [s.id for s in r.samples] == ["sample_00000001", "sample_00000002"]
    a, b = r.samples
    assert a.emotion == "happy" and a.transcript == "I am so happy." and a.meta["transcript_zh"] == "我很高兴"
    assert a.meta["valence"] == 2.5 and a.task == "mer" and a.candidates["mer"][:3] == ["neutral", "angry", "happy"]
    assert a.video.endswith("video-labeled/sample_00000001.avi")
    assert b.emotion == "worried" and len(r.skipped) == 1 and len(r.missing_media) == 1


def test_mer2023_csv_and_npz(tmp_path):
    import numpy as np

    src = _write(tmp_path / "train-label.csv", "name,discrete,valence\nsample_1,angry,-3\nsample_2,neutral,0\n")
    r = convert("mer2023", src)
    assert [s.emotion for s in r.samples] == ["angry", "neutral"] and all(s.task == "mer" for s in r.samples)
    npz = tmp_path / "label-6way.npz"
    np.savez(npz, train_corpus={"sample_3": {"emo": "sad", "val": -2.0}}, test1_corpus={"sample_4": {"emo": "surprise", "val": 1.0}})
    r = convert("mer2023", npz)
    assert {(s.id, s.emotion, s.meta["split"]) for s in r.samples} == {("sample_3", "sad", "train"), ("sample_4", "surprise", "test1")}


def test_ovmerd_and_mercaption(tmp_path):
    src = _write(tmp_path / "ovmerd.csv", "name,openset,reason\n"
                 "sample_1,\"['happy', 'excited', 'Happy']\",\n"
                 "sample_2,\"nervous, worried；anxious\",\n"
                 "sample_3,,\n")
    r = convert("ovmerd", src)
    assert [s.ov_labels for s in r.samples] == [["happy", "excited"], ["nervous", "worried", "anxious"]]
    assert all(s.task == "ovmer" for s in r.samples) and len(r.skipped) == 1
    cap = _write(tmp_path / "mercaptionplus.csv", "name,reason,openset\n"
                 "sample_9,\"In the video, she smiles broadly while her voice rises. Therefore she is happy.\",\"happy, excited\"\n"
                 "sample_10,\"He frowns and speaks slowly; he seems sad.\",\n")
    r = convert("mer-caption+", cap)
    assert r.format == "mercaption"
    a, b = r.samples
    assert a.task is None and set(a.tasks()) == {"ovmer", "eri"} and a.ov_labels == ["happy", "excited"]
    assert b.task == "eri" and b.reason.startswith("He frowns")


def test_meld_csv(tmp_path):
    src = _write(tmp_path / "MELD" / "train_sent_emo.csv",
                 "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
                 "1,also I was the point person on my company\u00e2\u20ac\u2122s transition,Chandler,neutral,neutral,0,0,8,21,00:16:16,059,00:16:21,731\n"
                 "2,You must\u2019ve had your hands full.,The Interviewer,joy,positive,0,1,8,21,00:16:21,940,00:16:23,442\n"
                 "3,That I did.,Chandler,sadness,negative,0,2,8,21,00:16:23,442,00:16:26,389\n"
                 "4,Hmm,Ross,bored,neutral,0,3,8,21,0,0\n")
    for split_dir in ("train_splits", "output_repeated_splits_test"):
        (tmp_path / "MELD" / split_dir).mkdir(parents=True)
        (tmp_path / "MELD" / split_dir / "dia0_utt1.mp4").write_bytes(b"x")
    r = convert("meld", src)
    assert [s.emotion for s in r.samples] == ["neutral", "happy", "sad"]
    assert r.samples[0].transcript == "also I was the point person on my company\u2019s transition"  # mojibake undone
    assert r.samples[1].sentiment == "positive" and r.samples[1].meta["label"] == "joy"
    # the same clip name exists in two splits: the train split's folder wins for a train CSV
    assert r.samples[1].video.endswith("train_splits/dia0_utt1.mp4")
    assert r.samples[0].id == "train_dia0_utt0" and len(r.skipped) == 1 and "bored" in r.skipped[0][1]


def test_iemocap_release_folder_and_csv(tmp_path):
    root = tmp_path / "IEMOCAP_full_release" / "Session1"
    _write(root / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt",
           "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
           "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\nC-E2:\tNeutral;\t()\n\n"
           "[10.0100 - 11.3925]\tSes01F_impro01_F001\texc\t[3.5000, 3.5000, 3.0000]\n\n"
           "[14.8872 - 18.0175]\tSes01F_impro01_F002\tfru\t[2.0000, 3.5000, 3.5000]\n\n"
           "[19.2900 - 20.7875]\tSes01F_impro01_M000\tang\t[1.5000, 4.0000, 4.0000]\n")
    _write(root / "dialog" / "transcriptions" / "Ses01F_impro01.txt",
           "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\nSes01F_impro01_F001 [010.0100-011.3925]: Do you have your forms?\n")
    wav = root / "sentences" / "wav" / "Ses01F_impro01"
    wav.mkdir(parents=True)
    (wav / "Ses01F_impro01_F000.wav").write_bytes(b"x")
    r = convert("iemocap", tmp_path / "IEMOCAP_full_release")
    assert [(s.id, s.emotion) for s in r.samples] == [("Ses01F_impro01_F000", "neutral"), ("Ses01F_impro01_F001", "happy"), ("Ses01F_impro01_M000", "angry")]
    assert r.samples[0].transcript == "Excuse me." and r.samples[0].audio == str(wav / "Ses01F_impro01_F000.wav")
    assert r.samples[0].candidates["mer"] == ["angry", "happy", "neutral", "sad"] and r.samples[0].meta["start"] == 6.2901
    assert len(r.skipped) == 1 and "fru" in r.skipped[0][1]
    csv_src = _write(tmp_path / "iemocap_4class.csv", "name,label,text\nSes02M_script01_1_F003,sad,I miss her.\nSes02M_script01_1_F004,xxx,\n")
    r = convert("iemocap", csv_src)
    assert [(s.id, s.emotion, s.transcript) for s in r.samples] == [("Ses02M_script01_1_F003", "sad", "I miss her.")]
    assert r.samples[0].audio.endswith("Session2/sentences/wav/Ses02M_script01_1/Ses02M_script01_1_F003.wav")


@pytest.mark.parametrize("fmt,scale", [("mosi", 1.0), ("mosei", 1.0), ("sims", 3.0), ("simsv2", 3.0)])
def test_msa_label_csv(tmp_path, fmt, scale):
    lo, hi = (-3.0, 3.0) if scale == 1 else (-1.0, 1.0)
    src = _write(tmp_path / "label.csv", "video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode\n"
                 f"03bSnISJMiM,1,a lot of sad parts,{lo * 0.8},{lo},0,0,Negative,train\n"
                 f"03bSnISJMiM,2,i loved it,{hi},{hi},0,0,Positive,valid\n"
                 "03bSnISJMiM,3,it is a movie,0,0,0,0,Neutral,test\n"
                 f"03bSnISJMiM,4,broken,{hi * 5},0,0,0,Positive,test\n")
    raw = tmp_path / "Raw" / "03bSnISJMiM"
    raw.mkdir(parents=True)
    (raw / "1.mp4").write_bytes(b"x")
    r = convert(fmt, src)
    assert [s.sentiment for s in r.samples] == ["negative", "positive", "neutral"]
    assert [s.sentiment_score for s in r.samples] == [pytest.approx(-2.4), pytest.approx(3.0), 0.0]
    assert all(-3 <= s.sentiment_score <= 3 and s.task == "msa" for s in r.samples)
    assert r.samples[0].video == str(raw.resolve() / "1.mp4") and len(r.missing_media) == 2
    assert [s.meta["split"] for s in r.samples] == ["train", "val", "test"] and len(r.skipped) == 1
    if scale != 1.0:
        assert r.samples[0].meta["score_raw"] == pytest.approx(-0.8)
    only = convert(fmt, src, split="test")
    assert [s.id for s in only.samples] == ["03bSnISJMiM_3"]


def test_m3ed_annotation(tmp_path):
    data = {
        "anjia_1_1": {
            "Speaker": {"A": "房似锦", "B": "徐文昌"},
            "Dialog": {
                "anjia_1_1_A_1": {"StartTime": "00:00:46.130", "EndTime": "00:00:47.780", "Text": "你是不是疯了",
                                  "EmoAnnotation": {"EmoAnnotator1": ["Anger"], "final_main_emo": "Anger", "final_sub_emo": ""}},
                "anjia_1_1_B_2": {"Text": "没有", "EmoAnnotation": {"final_mian_emo": "Neutral"}},
                "anjia_1_1_A_3": {"Text": "?", "EmoAnnotation": {}},
            },
        }
    }
    src = _write(tmp_path / "annotation.json", json.dumps(data, ensure_ascii=False))
    r = convert("m3ed", src)
    assert [(s.id, s.emotion) for s in r.samples] == [("anjia_1_1_A_1", "angry"), ("anjia_1_1_B_2", "neutral")]
    assert r.samples[0].meta["speaker"] == "房似锦" and r.samples[0].transcript == "你是不是疯了"
    assert len(r.skipped) == 1


def test_caer_folder(tmp_path):
    for split, emo, name in (("train", "Anger", "0001.avi"), ("train", "Happy", "0002.avi"), ("test", "Surprise", "0003.avi"),
                             ("test", "Unknown", "0004.avi")):
        (tmp_path / split / emo).mkdir(parents=True, exist_ok=True)
        (tmp_path / split / emo / name).write_bytes(b"x")
    r = convert("caer", tmp_path)
    assert {(s.id, s.emotion, s.meta["split"]) for s in r.samples} == {
        ("train/Anger/0001", "angry", "train"), ("train/Happy/0002", "happy", "train"), ("test/Surprise/0003", "surprise", "test")}
    assert r.missing_media == [] and len(r.skipped) == 1


def test_ferv39k_split_list(tmp_path):
    root = tmp_path / "FERV39k"
    src = _write(root / "4_setups" / "All_scenes" / "train_All.csv", "Action/Sad/0010 Sad\nAction/Happy/0002 Happy\nTalkshow/Angry/0007 Angry\n")
    clip = root / "2_ClipsforFaceCrop" / "Action" / "Sad" / "0010"
    clip.mkdir(parents=True)
    (clip / "1.jpg").write_bytes(b"x")
    r = convert("ferv39k", src, media_root=root)
    assert [(s.id, s.emotion, s.meta["scene"]) for s in r.samples] == [
        ("Action/Sad/0010", "sad", "Action"), ("Action/Happy/0002", "happy", "Action"), ("Talkshow/Angry/0007", "angry", "Talkshow")]
    assert r.samples[0].video == str(clip.resolve()) and len(r.missing_media) == 2
    assert len(convert("ferv39k", root).samples) == 3  # the folder: split lists found inside


def test_dfew_fold_file(tmp_path):
    src = _write(tmp_path / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv", "video_name,label\n2,2\n6,4\n10,7\n")
    r = convert("dfew", src)
    assert [(s.id, s.emotion) for s in r.samples] == [("00002", "sad"), ("00006", "angry"), ("00010", "fear")]


def test_avamerg_turns(tmp_path):
    data = [{
        "conversation_id": "00012", "topic": "work", "speaker_profile": {"age": "young", "gender": "female"},
        "listener_profile": {"age": "adult"},
        "turns": [
            {"dialogue_history": [{"index": 0, "role": "speaker", "utterance": "I finally got the promotion!"}],
             "response": "That's wonderful news, you worked so hard for it.",
             "chain_of_empathy": {"event_scenario": "The speaker was promoted.", "speaker_emotion": "proud",
                                  "emotion_cause": "Years of hard work paid off.", "goal_to_response": "Celebrate with them."}},
            {"dialogue_history": [{"index": 0, "role": "speaker", "utterance": "I finally got the promotion!"},
                                  {"index": 1, "role": "listener", "utterance": "That's wonderful news."},
                                  {"index": 2, "role": "speaker", "utterance": "But now I'm scared I'll fail."}],
             "response": "It's normal to feel nervous about something new.",
             "chain_of_empathy": {"event_scenario": "New responsibilities.", "speaker_emotion": "anxious",
                                  "emotion_cause": "Fear of failing.", "goal_to_response": "Reassure."}},
            {"dialogue_history": [], "response": "?"},
        ],
    }]
    src = _write(tmp_path / "test.json", json.dumps(data))
    (tmp_path / "test" / "video").mkdir(parents=True)
    (tmp_path / "test" / "video" / "dia12utt2.mp4").write_bytes(b"x")
    r = convert("avamerg", src)
    assert len(r.samples) == 2 and len(r.skipped) == 1
    a, b = r.samples
    assert a.task == "erg" and a.transcript == "I finally got the promotion!" and a.history == []
    assert a.chain_of_empathy == {"event": "The speaker was promoted.", "emotion": "proud", "cause": "Years of hard work paid off.", "goal": "Celebrate with them."}
    assert a.emotion == "proud" and a.response.startswith("That's wonderful") and a.meta["topic"] == "work"
    assert b.transcript == "But now I'm scared I'll fail." and [h["speaker"] for h in b.history] == ["speaker", "listener"]
    assert b.video == str((tmp_path / "test" / "video" / "dia12utt2.mp4").resolve())
    # the task-1 layout
    t1 = _write(tmp_path / "task1.json", json.dumps({"dia_ids": ["777"], "conversations": [
        {"dialogue_history": [{"index": 0, "role": "speaker", "utterance": "hi"}], "response": "hello",
         "coe": {"speaker_emotion": "joyful", "event_scenario": "e", "emotion_cause": "c", "goal_to_response": "g"}}]}))
    r = convert("avamerg", t1)
    assert r.samples[0].chain_of_empathy["emotion"] == "joyful" and r.samples[0].id == "777_t0"


# --- registry, locator, CLI -------------------------------------------------------------------------
def test_registry_lists_every_format():
    names = {f.name for f in formats()}
    expected = {"mintrec", "mintrec2", "crema_d", "merr", "emer", "dfew", "mer2023", "mer2024", "ovmerd", "mercaption",
                "meld", "iemocap", "mosi", "mosei", "sims", "simsv2", "m3ed", "caer", "ferv39k", "avamerg"}
    assert expected <= names
    assert get_format("MIntRec2.0").name == "mintrec2" and get_format("CREMA-D").name == "crema_d"
    with pytest.raises(DataError, match="unknown dataset format"):
        get_format("imagenet")


def test_register_adds_a_format(tmp_path):
    from nanoemox.data.datasets import register

    @register("toy_test_format", description="a toy", task="mer")
    def toy(ctx):
        for line in ctx.src.read_text().split():
            yield AffectSample(id=line, emotion="happy", video=ctx.locator.by_name(line))

    r = convert("toy_test_format", _write(tmp_path / "toy.txt", "a b a"))
    assert [s.id for s in r.samples] == ["a", "b", "a#2"]  # ids made unique
    assert r.samples[0].source == "toy_test_format"


def test_locator_rule(tmp_path):
    loc = MediaLocator(tmp_path, dataset_dirs=("MIntRec",))
    assert loc.tail("/home/lab00/hjh/dataset/MIntRec/video/S05_E16_329.mp4") == "video/S05_E16_329.mp4"
    assert loc.tail("/data/mintrec/MIntRec/raw/a.mp4") == "raw/a.mp4"  # the last matching folder
    assert loc.tail("C:\\\\data\\\\clips\\\\a.mp4") == "a.mp4"  # no dataset folder: the file name
    (tmp_path / "x" / "a").mkdir(parents=True)
    (tmp_path / "x" / "a" / "dup.mp4").write_bytes(b"x")
    (tmp_path / "x" / "b").mkdir()
    (tmp_path / "x" / "b" / "dup.mp4").write_bytes(b"x")
    loc = MediaLocator(tmp_path)
    assert loc.by_name("dup") == str(tmp_path.resolve() / "dup.mp4")  # ambiguous: not guessed, reported missing


def test_missing_source_and_bad_media_root(tmp_path):
    with pytest.raises(DataError, match="not found"):
        convert("mintrec", tmp_path / "nope.json")
    src = _write(tmp_path / "a.json", "[]")
    with pytest.raises(DataError, match="media-root"):
        convert("mintrec", src, media_root=tmp_path / "nope")
    bad = _write(tmp_path / "bad.json", "{not json")
    with pytest.raises(DataError):
        convert("mintrec", bad)


def test_cli_convert_and_formats(refdata, tmp_path, capsys):
    from nanoemox.cli import main

    out = tmp_path / "m.jsonl"
    rc = main(["data", "convert", "mintrec", str(refdata / "data/MIntRec/test_MIntRec_ann.json"), "--out", str(out)])
    cap = capsys.readouterr()
    assert rc == 0 and "wrote 445 records" in cap.out
    assert "missing media: 445 of 445" in cap.err and "S06_E04_70.mp4" in cap.err
    samples = read_manifest(out)
    assert len(samples) == 445 and samples[0].intent == "Arrange"
    rc = main(["data", "convert", "dfew", str(refdata / "data/dfew/annotation.xlsx"), "--out", str(tmp_path / "d.jsonl"), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary["records"] == 16372 and summary["tasks"] == {"mer": 12059, "none": 4313}
    assert main(["data", "formats", "--json"]) == 0
    listed = [json.loads(line)["name"] for line in capsys.readouterr().out.splitlines()]
    assert "avamerg" in listed and "mintrec2" in listed
    assert main(["data", "convert", "nosuch", "x", "--out", str(out)]) == 2
    assert "unknown dataset format" in capsys.readouterr().err
