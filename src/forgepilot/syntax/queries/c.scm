(function_definition declarator: (function_declarator declarator: (identifier) @name)) @definition.function
(function_definition declarator: (pointer_declarator declarator: (function_declarator declarator: (identifier) @name))) @definition.function
(struct_specifier name: (type_identifier) @name body: (field_declaration_list)) @definition.struct
(union_specifier name: (type_identifier) @name body: (field_declaration_list)) @definition.struct
(enum_specifier name: (type_identifier) @name body: (enumerator_list)) @definition.enum
(type_definition type: (struct_specifier) declarator: (type_identifier) @name) @definition.struct
(type_definition type: (enum_specifier) declarator: (type_identifier) @name) @definition.enum

(call_expression function: (identifier) @reference.call)
(type_identifier) @reference.type

(preproc_include path: (string_literal (string_content) @import))
