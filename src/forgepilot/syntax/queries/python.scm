; Definitions, references and imports for Python. Captures: @definition.<kind> on the node, @name on its name.
(class_definition name: (identifier) @name) @definition.class
(function_definition name: (identifier) @name) @definition.function

(call function: (identifier) @reference.call)
(call function: (attribute attribute: (identifier) @reference.call))
(type (identifier) @reference.type)
(class_definition superclasses: (argument_list (identifier) @reference.type))

(import_statement name: (dotted_name) @import)
(import_statement name: (aliased_import name: (dotted_name) @import))
(import_from_statement module_name: (_) @import name: (dotted_name) @import.name)
(import_from_statement module_name: (_) @import name: (aliased_import name: (dotted_name) @import.name))
(import_from_statement module_name: (_) @import (wildcard_import))
