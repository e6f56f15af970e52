(class_declaration name: (identifier) @name) @definition.class
(record_declaration name: (identifier) @name) @definition.class
(interface_declaration name: (identifier) @name) @definition.interface
(annotation_type_declaration name: (identifier) @name) @definition.interface
(enum_declaration name: (identifier) @name) @definition.enum
(method_declaration name: (identifier) @name) @definition.method
(constructor_declaration name: (identifier) @name) @definition.method

(method_invocation name: (identifier) @reference.call)
(object_creation_expression type: (type_identifier) @reference.type)
(type_identifier) @reference.type

(import_declaration (scoped_identifier) @import)
(import_declaration (scoped_identifier) @import (asterisk) @import.wildcard)
(package_declaration (scoped_identifier) @package)
(package_declaration (identifier) @package)
