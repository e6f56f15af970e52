; Kotlin declares classes, interfaces and enums all as class_declaration; the kind is refined from its keywords.
(class_declaration (type_identifier) @name) @definition.class
(object_declaration (type_identifier) @name) @definition.class
(function_declaration (simple_identifier) @name) @definition.function

(call_expression (simple_identifier) @reference.call)
(user_type (type_identifier) @reference.type)

(import_header (identifier) @import)
(package_header (identifier) @package)
