"""A stand-in for the `dbapi20` module tarantool-python's DB-API test imports from a git URL
this machine cannot reach: just the base class and helper its test module uses. The DB-API
compliance tests themselves (which need SQL) are not here."""

import unittest


def _failUnless(self, expr, msg=None):  # noqa: N802 (the name the suite calls)
    if not expr:
        raise self.failureException(msg)


class DatabaseAPI20Test(unittest.TestCase):
    driver = None
    connect_args = ()
    connect_kw_args = {}
    table_prefix = "dbapi20test_"
    ddl1 = ""
    ddl2 = ""
    xddl1 = ""
    xddl2 = ""
    lower_func = "lower"
    insert = "insert"

    def _connect(self):
        return self.driver.connect(*self.connect_args, **self.connect_kw_args)

    def executeDDL1(self, cursor):  # noqa: N802
        cursor.execute(self.ddl1)

    def executeDDL2(self, cursor):  # noqa: N802
        cursor.execute(self.ddl2)
