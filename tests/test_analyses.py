"""The analyses' wiring, with a stand-in for reproduce.py's runner (no training): which runs each analysis
asks for, the teacher it hands NAD, the beta selection rule, and the CSV and PNG it writes."""
import csv
import re
from types import SimpleNamespace

from experiments import analyses


class FakeRunner:
    """Answers every run with a summary whose ACC is acc(name); records the runs asked for."""

    def __init__(self, acc=lambda name: 82.0):
        self.acc, self.runs, self.models_asked = acc, [], []

    def __call__(self, name, flags, need_model=False, student=None):
        if need_model:
            self.models_asked.append(name)
        if student:  # as the real runner: --s_model from the record, and the model asked for (made if missing)
            student[1]()
            flags = [*flags, '--s_model', student[0]['checkpoint']]
        self.runs.append((name, [str(f) for f in flags]))
        return {'before': {'acc': 85.0, 'asr': 100.0}, 'after': {'acc': self.acc(name), 'asr': 5.0},
                'checkpoint': f'/erased/{name}.tar'}

    def defense(self, attack, defense, seed, need_model=False, protocol=None):
        return self(f'{attack}_{defense}_seed{seed}' + (f'_{protocol}' if protocol else ''), [])


def arguments(tmp_path, **kw):
    return SimpleNamespace(**{'analysis_attack': 'badnets', 'seeds': [0], 'results': str(tmp_path),
                              'models': str(tmp_path), 'acc_threshold': 80.0, 'attacks': ['badnets'],
                              'dry_run': False, **kw})


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_dry_run_writes_no_result_file(tmp_path):
    # A dry run's rows hold only the runs already stored; written, they would replace a full table.
    analyses.ratio(arguments(tmp_path, dry_run=True), FakeRunner())
    analyses.attention_fns(arguments(tmp_path, dry_run=True), FakeRunner())
    assert list(tmp_path.iterdir()) == []


def test_ratio_gives_nad_the_teacher_fine_tuned_on_the_same_fraction(tmp_path):
    runner = FakeRunner()
    analyses.ratio(arguments(tmp_path), runner)
    flags = dict(runner.runs)
    assert flags['ratio_badnets_nad_r0.1_seed0'][-2:] == ['--t_model', '/erased/ratio_badnets_finetune_r0.1_seed0.tar']
    assert '--ratio' in flags['ratio_badnets_finetune_r0.2_seed0'] and 'badnets_nad_seed0' in flags  # 5%: Table 1's
    table = rows(tmp_path / 'ratio_badnets.csv')
    assert sorted((r['method'], float(r['ratio'])) for r in table) == \
        sorted((m, r) for m in ('finetune', 'nad') for r in analyses.RATIOS)
    assert (tmp_path / 'ratio_badnets.png').stat().st_size > 1000


def test_beta_picks_the_largest_beta_whose_acc_stays_at_the_threshold(tmp_path, capsys):
    acc = {500: 84.0, 1000: 83.0, 2000: 81.0, 5000: 80.0, 10000: 79.9, 20000: 90.0, 50000: 90.0}

    def acc_of(name):
        found = re.search(r'_b(\d+)_', name)
        return acc[int(found.group(1))] if found else acc[1000]  # the default beta is Table 1's NAD run
    runner = FakeRunner(acc_of)
    analyses.beta(arguments(tmp_path), runner)
    assert 'beta: picked 5000' in capsys.readouterr().out
    assert not any('b20000' in name for name, _ in runner.runs)  # it stops at the first drop below
    assert [float(r['beta']) for r in rows(tmp_path / 'beta_badnets.csv')] == [500, 1000, 2000, 5000, 10000]
    b5000 = dict(runner.runs)['beta_badnets_b5000_seed0']
    assert b5000[b5000.index('--beta1') + 1] == '2500.0' and b5000[b5000.index('--beta3') + 1] == '5000'


def test_adaptive_trains_each_alpha_once_and_defends_it_with_tables_betas(tmp_path):
    runner = FakeRunner()
    runner.train = lambda name, flags: runner.runs.append((name, [str(f) for f in flags]))
    analyses.adaptive(arguments(tmp_path), runner)
    flags = dict(runner.runs)
    assert [n for n, _ in runner.runs if not n.endswith(('_teacher', '_finetune', '_nad'))] == \
        [f'adaptive_a{a}' for a in analyses.ADAPTIVE_ALPHAS]
    assert flags['adaptive_a1.0_seed0_nad'][-2:] == ['--beta3', '20000']
    assert flags['adaptive_a0.2_seed0_nad'][-2:] == ['--beta3', '10000']
    assert len(rows(tmp_path / 'adaptive.csv')) == 2 * len(analyses.ADAPTIVE_ALPHAS)


def test_nad_beta_reuses_table1_and_the_beta_sweeps_runs(tmp_path):
    runner = FakeRunner()
    analyses.nad_beta(arguments(tmp_path, nad_beta=5000, attacks=['badnets', 'sig']), runner)
    names = [n for n, _ in runner.runs]
    assert names == ['badnets_finetune_seed0', 'badnets_nad_seed0', 'beta_badnets_b5000_seed0',
                     'sig_finetune_seed0', 'sig_nad_seed0', 'beta_sig_b5000_seed0']
    assert [r['attack'] for r in rows(tmp_path / 'nad_beta5000.csv')] == ['badnets', 'sig']


def test_all2all_trains_its_model_from_scratch_the_zoos_way(tmp_path):
    runner = FakeRunner()
    runner.train = lambda name, flags: runner.runs.append((f'train {name}', [str(f) for f in flags]))
    analyses.all2all(arguments(tmp_path), runner)
    flags = dict(runner.runs)['train all2all']
    assert '--init' not in flags and flags[flags.index('--epochs') + 1] == str(analyses.BACKDOOR_EPOCHS)
    assert [name for name, _ in runner.runs][1:] == ['all2all_seed0_teacher', 'all2all_seed0_finetune', 'all2all_seed0_nad']


def test_tradeoff_sweeps_the_code_schedules_lr_with_each_lrs_own_teacher(tmp_path):
    runner = FakeRunner(acc=lambda name: 70.0 + 3 * len(name) % 17)
    analyses.tradeoff(arguments(tmp_path, seeds=[0, 1]), runner)
    names = [n for n, _ in runner.runs]
    assert 'badnets_nad_seed1_code' in names and 'tradeoff_badnets_nad_lr0.003_seed1' in names   # lr 0.1: Table 1's
    for name, flags in runner.runs:
        if name.startswith('tradeoff_badnets_nad_lr'):
            lr = name.split('_lr')[1].split('_')[0]
            assert flags[flags.index('--t_model') + 1] == f'/erased/tradeoff_badnets_finetune_lr{lr}_seed{name[-1]}.tar'
            assert flags[flags.index('--protocol') + 1] == 'code' and flags[flags.index('--lr') + 1] == lr
    assert len(rows(tmp_path / 'tradeoff.csv')) == 2 * 4 * 2     # 2 defenses x 4 lrs x 2 seeds
    assert (tmp_path / 'tradeoff.png').stat().st_size > 1000 and rows(tmp_path / 'tradeoff_summary.csv')


def test_matched_difference_reads_fine_tunings_curve_at_nads_acc():
    ft = [(70, 0), (80, 10), (85, 50)]
    rows = [{'seed': 0, 'method': 'finetune', 'acc': a, 'asr': s} for a, s in ft] + \
        [{'seed': 0, 'method': 'nad', 'acc': a, 'asr': s} for a, s in ((75, 2), (84, 30), (90, 60))]
    result = analyses.matched_difference(rows)       # 2 - 5 and 30 - 42; ACC 90 is beyond fine-tuning's curve
    assert result['matched_runs'] == 2 and result['nad_minus_ft_asr'] == -7.5
    assert abs(result['sd'] - 6.3640) < 1e-3


def test_protocols_runs_the_quick_start_model_under_each_protocol_with_its_own_teacher(tmp_path):
    acc = {'code': 76.0, 'paper': 70.0, 'paper-lr0.01': 85.0}
    runner = FakeRunner(acc=lambda name: acc[name.split('_')[2]])
    analyses.protocols(arguments(tmp_path, seeds=[0, 1]), runner)
    flags = dict(runner.runs)
    assert len(runner.runs) == 3 * 2 * 2                            # protocols x seeds x (teacher, NAD)
    nad = flags['quickstart_nad_code_seed1']
    assert nad[nad.index('--t_model') + 1] == '/erased/quickstart_teacher_code_seed1.tar'
    assert nad[nad.index('--s_model') + 1] == analyses.QUICKSTART and nad[nad.index('--protocol') + 1] == 'code'
    assert '--make_teacher' in flags['quickstart_teacher_paper_seed0']
    summary = {r['protocol']: r for r in rows(tmp_path / 'protocols_summary.csv')}
    # FakeRunner: every ASR is 5.0, so NAD is never below fine-tuning and the claim holds nowhere
    assert float(summary['paper-lr0.01']['nad_acc']) == 85.0 and summary['code']['claim_holds'] == 'False'
    assert len(rows(tmp_path / 'protocols.csv')) == 12


def test_attribution_trains_the_authors_recipe_once_and_defends_both_models(tmp_path):
    class Runner(FakeRunner):  # NAD leaves 2 points less ASR than fine-tuning
        def __call__(self, name, flags, need_model=False):
            summary = super().__call__(name, flags, need_model)
            return {**summary, 'after': {**summary['after'], 'asr': 3.0 if 'nad' in name else 5.0}}
    runner = Runner()
    trained = []
    runner.train = lambda name, flags: trained.append((name, [str(f) for f in flags])) or \
        {'final': {'acc': 80.0, 'asr': 100.0, 'ra': 0.0}}
    runner.before = lambda attack: {'acc': 85.0, 'asr': 99.0, 'ra': 1.0}
    analyses.attribution(arguments(tmp_path, seeds=[0, 1], attacks=['badnets', 'trojan', 'blend', 'sig']), runner)
    assert [n for n, _ in trained] == [f'WRN-16-1-{a}-authors' for a in analyses.ATTRIBUTION_ATTACKS]
    recipe = trained[0][1]
    assert recipe[recipe.index('--recipe') + 1] == 'authors' and recipe[-1] == analyses.authors_model('badnets')
    flags = dict(runner.runs)
    nad = flags['sig-authors_nad_paper_seed0']
    assert nad[nad.index('--s_model') + 1] == analyses.authors_model('sig')
    assert nad[nad.index('--t_model') + 1] == '/erased/sig-authors_teacher_paper_seed0.tar'
    assert 'trojan_nad_seed1_paper-lr0.01' in flags                     # the zoo model's runs are Table 1's
    table = rows(tmp_path / 'attribution.csv')
    assert len(table) == 3 * (2 + 2 * 3 * 4)               # 2 befores + seeds x protocols x (2 recipes x 2 methods)
    summary = rows(tmp_path / 'attribution_summary.csv')
    assert {(r['recipe'], r['method']) for r in summary if r['protocol']} == \
        {(r, m) for r in ('zoo', 'authors') for m in ('finetune', 'nad')}
    assert {r['nad_minus_ft_asr'] for r in summary if r['method'] == 'nad'} == {'-2.0'}
    markdown = (tmp_path / 'attribution.md').read_text().splitlines()
    assert '| sig | zoo | 99.00 / 85.00 | code | 5.00+-0.00 / 82.00+-0.00 | 3.00+-0.00 / 82.00+-0.00 | -2.00+-0.00 |' \
        in markdown
    assert sum(line.startswith('| sig | authors | 100.00 / 80.00 |') for line in markdown) == 3


def test_detection_runs_nc_and_strip_on_the_zoo_model_and_on_its_nad_erased_model(tmp_path):
    class Runner(FakeRunner):
        def __call__(self, name, flags, need_model=False, student=None):
            summary = super().__call__(name, flags, need_model, student)
            flagged = [0, 3] if 'zoo' in name and 'seed1' in name else [0] if 'zoo' in name else []
            return {**summary, 'neural_cleanse': {'anomaly_index': 4.0 if 'zoo' in name else 1.0, 'target_label': 0,
                                                  'flagged': flagged, 'target_flagged': 0 in flagged},
                    'strip': {'frr': 1.0, 'far': 20.0 if 'zoo' in name else 90.0, 'auroc': 0.9}}
    runner = Runner()
    analyses.detection(arguments(tmp_path, seeds=[0, 1]), runner)
    names = [name for name, _ in runner.runs]
    assert 'detection_badnets_nad_nc_seed1' in names and 'detection_badnets_zoo_strip_seed0' in names
    flags = dict(runner.runs)['detection_badnets_nad_nc_seed1']
    assert flags[flags.index('--s_model') + 1] == '/erased/detection_badnets_nad_seed1.tar'   # NAD of its seed
    teacher = dict(runner.runs)['detection_badnets_teacher_seed1']          # made as Table 1's, under its own name
    assert '--make_teacher' in teacher and dict(runner.runs)['detection_badnets_nad_seed1'][-1] == \
        '/erased/detection_badnets_teacher_seed1.tar'
    assert '--s_model' not in dict(runner.runs)['detection_badnets_zoo_nc_seed0']     # the zoo model itself
    assert runner.models_asked.count('detection_badnets_nad_seed1') == 2    # NAD's model, for NC and STRIP on it
    cells = {(r['model'], r['method']): r for r in rows(tmp_path / 'detection_badnets_seeds0-1_summary.csv')}
    assert cells['backdoored', 'nc']['target_flagged'] == '2' and cells['backdoored', 'nc']['other_flagged'] == '1'
    assert cells['after NAD', 'nc']['target_flagged'] == '0' and float(cells['after NAD', 'nc']['anomaly_index']) == 1.0
    assert float(cells['backdoored', 'strip']['far']) == 20.0 and cells['backdoored', 'strip']['seeds'] == '2'
    markdown = (tmp_path / 'detection_badnets_seeds0-1.md').read_text()     # a subset: never the whole grid's file
    assert analyses.detection_name(arguments(tmp_path, attacks=list(analyses.TABLE1), seeds=[0, 1, 2])) == 'detection'
    assert '| badnets | backdoored | 100.00+-0.00 | 2 / 2 | 1 / 2 | 4.00+-0.00 | 82.00+-0.00 / 5.00+-0.00 |' in markdown
    assert '| badnets | after NAD | 1.00+-0.00 | 90.00+-0.00 | 0.900+-0.000 |' in markdown
