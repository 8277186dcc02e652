"""zoo/sweep.py's plan and its pick rule (no training: the rule is what decides which model ships)."""
from types import SimpleNamespace

from zoo import sweep as zoo_sweep


def args(**kw):
    return SimpleNamespace(**{'attacks': ['badnets', 'cl', 'sig'], 'seeds': [3], 'match': None, 'device': 'cpu', 'out': 'w',
                              'results': 'r', **kw})


def test_variants_interleave_attacks_clean_label_first():
    names = [v.name for v in zoo_sweep.variants(args())]
    assert names[:3] == ['WRN-16-1-cl-15ep-seed3', 'WRN-16-1-sig-15ep-seed3', 'WRN-16-1-badnets-15ep-seed3']
    assert len(names) == len(zoo_sweep.VARIANTS['cl']) + len(zoo_sweep.VARIANTS['sig']) + len(zoo_sweep.VARIANTS['badnets'])
    assert 'WRN-16-1-sig-30ep-wd1e-4-seed3' in names
    _, attack, _, _, _, flags = zoo_sweep.variants(args())[0]
    assert attack == 'cl' and flags[flags.index('--seed') + 1] == 3 and '--init' not in flags   # from scratch
    assert flags[flags.index('--output') + 1] == 'w/WRN-16-1-cl-15ep-seed3.pth.tar'


def test_variant_flags_reach_train_badnet_and_match_filters():
    only = zoo_sweep.variants(args(attacks=['sig'], match=['30ep-wd'], seeds=[3, 4]))
    assert [v.name for v in only] == ['WRN-16-1-sig-30ep-wd1e-4-seed3', 'WRN-16-1-sig-30ep-wd1e-4-seed4']
    flags = only[0].flags
    assert flags[flags.index('--weight_decay') + 1] == '1e-4' and only[0].epochs == 30
    cut = zoo_sweep.variants(args(attacks=['sig'], match=['15ep-wd1e-4-cut16']))   # SIG's shipped recipe
    assert [v.name for v in cut] == ['WRN-16-1-sig-15ep-wd1e-4-cut16-seed3']
    assert cut[0].flags[cut[0].flags.index('--cutout_length') + 1] == '16'


def row(name, acc, asr, attack='trojan', status='done'):
    r = {'name': name, 'attack': attack, 'acc': acc, 'asr': asr, 'paper_acc': zoo_sweep.PAPER_ACC.get(attack),
         'status': status}
    return {**r, 'meets_target': asr >= zoo_sweep.TARGET_ASR and zoo_sweep.in_band(r)}


def test_pick_prefers_the_target_then_the_acc_band_then_asr():
    # The target beats a higher ASR outside the ACC band.
    assert zoo_sweep.pick([row('a', 90.0, 100.0), row('b', 83.0, 96.0)])['name'] == 'b'
    # None meets it: the highest ASR within the band beats a higher one outside it.
    assert zoo_sweep.pick([row('a', 90.0, 99.0), row('b', 83.0, 60.0), row('c', 82.0, 50.0)])['name'] == 'b'
    # None within the band: the highest ASR.
    assert zoo_sweep.pick([row('a', 90.0, 99.0), row('b', 89.0, 99.5)])['name'] == 'b'
    # Unfinished variants never ship; with none finished there is no pick.
    assert zoo_sweep.pick([row('a', 83.0, 99.0, status='failed'), row('b', 90.0, 50.0)])['name'] == 'b'
    assert zoo_sweep.pick([row('a', 83.0, 99.0, status='failed')]) is None


def test_poison_label_refool_has_no_paper_acc_so_only_its_asr_counts():
    names = [v.name for v in zoo_sweep.variants(args(attacks=['refool_pl'], seeds=[0]))]
    assert names == ['WRN-16-1-refool_pl-10ep-seed0', 'WRN-16-1-refool_pl-20ep-seed0']
    assert row('a', 70.0, 95.0, attack='refool_pl')['meets_target']
    assert zoo_sweep.pick([row('a', 83.4, 80.8, 'refool_pl'), row('b', 70.0, 96.0, 'refool_pl')])['name'] == 'b'


def test_summary_keeps_the_rows_of_variants_outside_this_sweep(tmp_path, monkeypatch):
    import csv
    monkeypatch.setattr(zoo_sweep, 'ROOT', str(tmp_path))
    a = args(attacks=['sig'], out='w', results='r')
    (tmp_path / 'r').mkdir()
    (tmp_path / 'r' / 'summary.csv').write_text('name,attack,status\nWRN-16-1-cl-old,cl,done\nWRN-16-1-sig-15ep-seed3,sig,done\n')
    variants = zoo_sweep.variants(a)
    zoo_sweep.summarise(a, variants, {v.name: 'not started' for v in variants})
    with open(tmp_path / 'r' / 'summary.csv') as f:
        rows = list(csv.DictReader(f))
    assert [r['name'] for r in rows][0] == 'WRN-16-1-cl-old'                        # kept
    assert sum(r['name'] == 'WRN-16-1-sig-15ep-seed3' for r in rows) == 1            # replaced, not doubled
    assert {r['status'] for r in rows if r['attack'] == 'sig'} == {'not started'}
