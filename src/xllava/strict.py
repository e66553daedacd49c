"""The base of every typed config: unknown keys are errors, so a misspelt recipe field fails loudly.

Its own module, importing only pydantic, so that stage configs kept beside their code
(xllava.vocab.config, xllava.datagen.config, xllava.eval.suite_config, xllava.lm.config) and the
recipe in xllava.config can import each other's classes without an import cycle.
"""

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
