# The compatibility suite's driver: runs one of CPython's own regression
# test modules (test.<name>) with unittest and records every test id's
# outcome. The same source runs bare (`python3 driver.py NAME WORKDIR OUTFILE`,
# one line per test) and inside a cell (spec/compat/run.lua execs
# it, then calls compat_run(NAME, WORKDIR) and gets a map back), so the two
# runs differ only in where they run.
#
# Outcomes: pass, xfail (an expected failure: a success to unittest),
# fail, error, skip, uxpass (an unexpected success: a failure).
# Set up as regrtest does (no -u resources, not verbose), in a fresh
# working directory that also holds tempfile's files, so the relative
# os_helper.TESTFN of two runs never meet.
import sys
import tempfile
import unittest

RANK = {"pass": 0, "xfail": 0, "skip": 1, "uxpass": 2, "fail": 3, "error": 4}


def brief(detail, limit=400):
    """One line; a long one keeps its start and its end (where a failed
    doctest says what the example raised)."""
    text = " ".join(str(detail).split())
    if len(text) <= limit:
        return text
    return text[:limit // 2 - 3] + " ... " + text[-(limit // 2 - 2):]


class Recorder(unittest.TestResult):
    """Keeps the worst outcome seen for each test id (a failed subtest
    fails its test) and the first line of why it did not pass."""

    def __init__(self):
        super().__init__()
        self.outcomes, self.details = {}, {}

    def _note(self, test, outcome, detail=""):
        tid = test.id()
        old = self.outcomes.get(tid)
        if old is None or RANK[outcome] > RANK[old]:
            self.outcomes[tid] = outcome
            if detail:
                self.details[tid] = brief(detail)

    def _why(self, err):
        exc = err[1]
        return "%s: %s" % (type(exc).__name__, exc)

    def addSuccess(self, test):
        self._note(test, "pass")

    def addFailure(self, test, err):
        self._note(test, "fail", self._why(err))

    def addError(self, test, err):
        self._note(test, "error", self._why(err))

    def addSkip(self, test, reason):
        self._note(test, "skip", reason)

    def addExpectedFailure(self, test, err):
        self._note(test, "xfail")

    def addUnexpectedSuccess(self, test):
        self._note(test, "uxpass", "unexpected success")

    def addSubTest(self, test, subtest, err):
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._note(test, "fail" if failed else "error", self._why(err))


class Doctests(unittest.TestCase):
    """Stands for one support.run_doctest call of a legacy test_main, or
    for test_main itself when it raised."""

    def __init__(self, name):
        super().__init__()
        self.name = name

    def id(self):
        return self.name

    def runTest(self):
        pass


def run_legacy(module, rec):
    """The old protocol regrtest still honours (3.11's test_decimal):
    test_main() runs its classes through support.run_unittest, which ends
    in support._run_suite, and its doctests through run_doctest. Both are
    routed to the recorder; a doctest run is one test."""
    from test import support
    saved = support._run_suite, getattr(module, "run_doctest", None)
    count = [0]

    def run_doctest(mod, verbosity=None, optionflags=0):
        count[0] += 1
        test = Doctests("%s.run_doctest_%d" % (module.__name__, count[0]))
        try:
            saved[1](mod, verbosity, optionflags=optionflags)
            rec.addSuccess(test)
        except Exception:
            rec.addFailure(test, sys.exc_info())

    support._run_suite = lambda suite: suite.run(rec)
    if saved[1] is not None:
        module.run_doctest = run_doctest
    try:
        module.test_main()
    except Exception:
        rec.addError(Doctests(module.__name__ + ".test_main"), sys.exc_info())
    finally:
        support._run_suite = saved[0]
        if saved[1] is not None:
            module.run_doctest = saved[1]


def run_module(module, rec):
    if hasattr(module, "test_main"):
        run_legacy(module, rec)
    else:
        unittest.defaultTestLoader.loadTestsFromModule(module).run(rec)


def compat_run(name, workdir, bare=False):
    """Run test.<name> in workdir; return {outcomes=, details=, error=}.
    A module that cannot be imported or loaded is reported as error, with
    no outcomes: the runner compares that with the bare run."""
    from test import support
    support.verbose = 0
    support.use_resources = []
    support.failfast = False
    tempfile.tempdir = workdir
    rec = Recorder()
    rec.buffer = True  # tests' own prints stay out of the runner's output
    try:
        # Never changed back: a bare run exits and a cell is thrown away,
        # and a cell may not even read the directory it started in.
        sys.modules["os"].chdir(workdir)
        # sys.path[0] as a plain `python -m test` has it: a directory the
        # tests may write modules to (bare: instead of this script's own).
        if bare:
            sys.path[0] = workdir
        else:
            sys.path.insert(0, workdir)
        module = __import__("test." + name, fromlist=["*"])
        run_module(module, rec)
    except BaseException as e:  # the module itself failed: say so, whole
        return {"outcomes": {}, "details": {},
                "error": "%s: %s" % (type(e).__name__, e)}
    finally:
        tempfile.tempdir = None
    return {"outcomes": rec.outcomes, "details": rec.details, "error": ""}


def bare_main(name, workdir, outfile):
    """Bare run: one `outcome<TAB>id<TAB>detail` line per test in outfile
    (not stdout, which tests and their children may write to), and an
    `!error<TAB><TAB>why` line when the module itself failed."""
    r = compat_run(name, workdir, bare=True)
    out = open(outfile, "w", encoding="utf-8")
    if r["error"]:
        out.write("!error\t\t%s\n" % r["error"].replace("\n", " "))
    for tid, outcome in sorted(r["outcomes"].items()):
        detail = r["details"].get(tid, "").replace("\t", " ")
        out.write("%s\t%s\t%s\n" % (outcome, tid, detail))
    out.close()


if __name__ == "__main__" and len(getattr(sys, "argv", ())) == 4:
    bare_main(sys.argv[1], sys.argv[2], sys.argv[3])
