(class_declaration name: (identifier) @name) @definition.class
(record_declaration name: (identifier) @name) @definition.class
(interface_declaration name: (identifier) @name) @definition.interface
(struct_declaration name: (identifier) @name) @definition.struct
(enum_declaration name: (identifier) @name) @definition.enum
(method_declaration name: (identifier) @name) @definition.method
(constructor_declaration name: (identifier) @name) @definition.method
(namespace_declaration name: (_) @name) @container

(invocation_expression function: (identifier) @reference.call)
(invocation_expression function: (member_access_expression name: (identifier) @reference.call))
(base_list (identifier) @reference.type)
(object_creation_expression type: (identifier) @reference.type)

(using_directive (qualified_name) @import)
(using_directive (identifier) @import)
(namespace_declaration name: (_) @package)
(file_scoped_namespace_declaration name: (_) @package)
